package dev.deploytool.demo.core

import java.io.File
import kotlin.math.abs
import kotlin.system.exitProcess

/*
 * Checks the core against tests/demos/fixture.json (shared with the Swift core).
 * A plain main() rather than JUnit so it also runs with a bare kotlinc (tests/demos/test_demo_cores.py)
 * and via `./gradlew :core:fixtureCheck`.
 */

private var failures = 0
private var checks = 0

private fun check(ok: Boolean, what: () -> String) {
    checks++
    if (!ok) { failures++; System.err.println("FAIL: " + what()) }
}

private fun checkClose(name: String, got: FloatArray, want: List<Double>, tol: Double) {
    check(got.size == want.size) { "$name: size ${got.size} != ${want.size}" }
    for (i in 0 until minOf(got.size, want.size)) {
        check(abs(got[i] - want[i]) <= tol) { "$name[$i]: ${got[i]} != ${want[i]}" }
    }
}

@Suppress("UNCHECKED_CAST")
private fun obj(v: Any?) = v as Map<String, Any?>

private fun doubles(v: Any?) = (v as List<*>).map { (it as Number).toDouble() }

fun main(args: Array<String>) {
    val path = if (args.isNotEmpty()) args[0] else "../tests/demos/fixture.json"
    val fx = obj(Json.parse(File(path).readText()))
    val tol = obj(fx["tolerance"])
    val inputTol = (tol["input"] as Number).toDouble()
    val probTol = (tol["probability"] as Number).toDouble()

    // Image: nested [H][W][3] uint8 lists -> packed ARGB like Bitmap.getPixels.
    val image = obj(fx["image"])
    val h = (image["height"] as Number).toInt()
    val w = (image["width"] as Number).toInt()
    val argb = IntArray(w * h)
    (image["pixels"] as List<*>).forEachIndexed { y, row ->
        (row as List<*>).forEachIndexed { x, px ->
            val c = (px as List<*>).map { (it as Number).toInt() }
            argb[y * w + x] = (0xFF shl 24) or (c[0] shl 16) or (c[1] shl 8) or c[2]
        }
    }

    val manifestMap = obj(fx["manifest"])
    val manifest = Manifest.fromMap(manifestMap)
    check(manifest.inputHeight == h && manifest.inputWidth == w) { "input size ${manifest.inputShape} vs image ${h}x$w" }
    checkClose("expected_input", ImageMath.normalize(argb, w, h, manifest.preprocess), doubles(fx["expected_input"]), inputTol)

    for (case in (fx["cases"] as List<*>).map { obj(it) }) {
        val m = LinkedHashMap(manifestMap)
        m["preprocess"] = case["preprocess"]
        m["inputs"] = listOf(mapOf("name" to "x", "shape" to case["shape"], "dtype" to "float32"))
        val pre = Manifest.fromMap(m).preprocess
        checkClose("cases.${case["name"]}", ImageMath.normalize(argb, w, h, pre), doubles(case["expected_input"]), inputTol)
    }

    val logits = doubles(fx["logits"]).map { it.toFloat() }.toFloatArray()
    val probs = ImageMath.softmax(logits)
    checkClose("expected_probabilities", probs, doubles(fx["expected_probabilities"]), probTol)

    val want = obj(fx["expected_topk"])
    val top = ImageMath.topK(probs, (want["k"] as Number).toInt(), manifest::label)
    check(top.map { it.index } == doubles(want["indices"]).map { it.toInt() }) { "topk indices ${top.map { it.index }}" }
    check(top.map { it.label } == want["labels"]) { "topk labels ${top.map { it.label }}" }
    checkClose("topk probabilities", top.map { it.probability }.toFloatArray(), doubles(want["probabilities"]), probTol)

    // Parser and manifest edge cases the fixture does not cover.
    check(Json.parse("{\"a\": [1, -2.5e1, true, null, \"x\\\"\\u00e9\"]}") ==
            mapOf("a" to listOf(1.0, -25.0, true, null, "x\"\u00e9"))) { "Json escapes/numbers" }
    check(try { Json.parse("{\"a\": [1,]}"); false } catch (e: IllegalArgumentException) { true }) { "Json rejects bad input" }
    val noLabels = LinkedHashMap(manifestMap)
    noLabels["labels"] = null
    check(Manifest.fromMap(noLabels).label(7) == "7") { "label fallback to index" }

    if (failures > 0) {
        System.err.println("$failures of $checks checks failed")
        exitProcess(1)
    }
    println("fixture OK: $checks checks")
}
