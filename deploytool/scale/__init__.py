"""Scale-out: executors (local processes, Ray) and the jobs they run (export, gate, zoo, quantization candidates).

    >>> from deploytool.scale.executor import executor_for
    >>> executor = executor_for("local", jobs=2)
"""
