package dev.deploytool.demo.core

/** The part of deploytool's manifest.json ("deploytool.manifest/1") the demo needs. */
data class Preprocess(
    val resize: Int?,
    val centerCrop: List<Int>?,   // [height, width]
    val color: String,            // "RGB", "BGR" or "L"
    val scale: Double,
    val mean: List<Double>,
    val std: List<Double>,
    val layout: String            // "NCHW" or "NHWC"
) {
    val channels: Int get() = if (color == "L") 1 else 3
}

data class Manifest(
    val schema: String,
    val model: String,
    val artifactFile: String,
    val inputShape: List<Long>,
    val preprocess: Preprocess,
    val labels: List<String>?,
    val executorchVersion: String?
) {
    val inputHeight: Int get() = (if (preprocess.layout == "NHWC") inputShape[1] else inputShape[2]).toInt()
    val inputWidth: Int get() = (if (preprocess.layout == "NHWC") inputShape[2] else inputShape[3]).toInt()

    /** Label for a class index; the index itself when the model has no labels. */
    fun label(index: Int): String = labels?.getOrNull(index) ?: index.toString()

    companion object {
        const val SCHEMA = "deploytool.manifest/1"

        fun parse(text: String): Manifest = fromMap(asMap(Json.parse(text), "manifest"))

        fun fromMap(m: Map<String, Any?>): Manifest {
            val schema = m["schema"] as? String ?: error("manifest: missing schema")
            require(schema == SCHEMA) { "manifest: unsupported schema '$schema' (want $SCHEMA)" }
            val input = asMap(asList(m["inputs"], "inputs").firstOrNull(), "inputs[0]")
            val shape = asList(input["shape"], "inputs[0].shape").map { (it as Number).toLong() }
            require(shape.size == 4) { "manifest: expected a 4-D image input, got $shape" }
            val p = asMap(m["preprocess"], "preprocess")
            val pre = Preprocess(
                resize = (p["resize"] as? Number)?.toInt(),
                centerCrop = (p["center_crop"] as? List<*>)?.map { (it as Number).toInt() },
                color = p["color"] as? String ?: "RGB",
                scale = (p["scale"] as? Number)?.toDouble() ?: 1.0,
                mean = numbers(p["mean"], "preprocess.mean"),
                std = numbers(p["std"], "preprocess.std"),
                layout = p["layout"] as? String ?: "NCHW"
            )
            require(pre.color in listOf("RGB", "BGR", "L")) { "manifest: unknown color ${pre.color}" }
            require(pre.layout in listOf("NCHW", "NHWC")) { "manifest: unknown layout ${pre.layout}" }
            require(pre.mean.size == pre.channels && pre.std.size == pre.channels) {
                "manifest: mean/std need ${pre.channels} values for color ${pre.color}"
            }
            val artifact = m["artifact"] as? Map<*, *>
            val versions = m["versions"] as? Map<*, *>
            return Manifest(
                schema = schema,
                model = m["model"] as? String ?: "",
                artifactFile = artifact?.get("file") as? String ?: "model.pte",
                inputShape = shape,
                preprocess = pre,
                labels = (m["labels"] as? List<*>)?.map { it.toString() },
                executorchVersion = versions?.get("executorch") as? String
            )
        }

        @Suppress("UNCHECKED_CAST")
        private fun asMap(v: Any?, what: String): Map<String, Any?> =
            v as? Map<String, Any?> ?: error("manifest: '$what' must be an object")

        private fun asList(v: Any?, what: String): List<Any?> =
            v as? List<Any?> ?: error("manifest: '$what' must be an array")

        private fun numbers(v: Any?, what: String): List<Double> =
            asList(v, what).map { (it as Number).toDouble() }
    }
}
