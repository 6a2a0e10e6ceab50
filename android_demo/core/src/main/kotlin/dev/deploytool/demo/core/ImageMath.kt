package dev.deploytool.demo.core

import kotlin.math.exp

/** One ranked class of a classification result. */
data class Prediction(val index: Int, val label: String, val probability: Float)

object ImageMath {
    /**
     * Packed 0xAARRGGBB pixels (what android.graphics.Bitmap.getPixels returns), already at
     * the model input size, -> normalised float input: (pixel * scale - mean[c]) / std[c]
     * in the manifest's colour order and layout.
     */
    fun normalize(argb: IntArray, width: Int, height: Int, pre: Preprocess): FloatArray {
        require(argb.size == width * height) { "expected ${width * height} pixels, got ${argb.size}" }
        val c = pre.channels
        val plane = width * height
        val out = FloatArray(plane * c)
        val values = DoubleArray(3)
        for (i in 0 until plane) {
            val p = argb[i]
            val r = (p shr 16) and 0xFF
            val g = (p shr 8) and 0xFF
            val b = p and 0xFF
            when (pre.color) {
                "RGB" -> { values[0] = r.toDouble(); values[1] = g.toDouble(); values[2] = b.toDouble() }
                "BGR" -> { values[0] = b.toDouble(); values[1] = g.toDouble(); values[2] = r.toDouble() }
                // Pillow's convert("L") integer formula, so the app matches a PIL-based export.
                else -> values[0] = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) shr 16).toDouble()
            }
            for (ch in 0 until c) {
                val v = ((values[ch] * pre.scale - pre.mean[ch]) / pre.std[ch]).toFloat()
                out[if (pre.layout == "NHWC") i * c + ch else ch * plane + i] = v
            }
        }
        return out
    }

    /** Numerically stable softmax (shifts by the max logit before exp). */
    fun softmax(logits: FloatArray): FloatArray {
        require(logits.isNotEmpty()) { "no logits" }
        var max = logits[0]
        for (v in logits) if (v > max) max = v
        val e = DoubleArray(logits.size) { exp(logits[it].toDouble() - max.toDouble()) }
        val sum = e.sum()
        return FloatArray(logits.size) { (e[it] / sum).toFloat() }
    }

    /** The k most probable classes, best first; ties keep the lower index first. */
    fun topK(probs: FloatArray, k: Int, label: (Int) -> String): List<Prediction> =
        probs.indices.sortedWith(compareBy<Int>({ -probs[it] }, { it }))
            .take(k)
            .map { Prediction(it, label(it), probs[it]) }
}
