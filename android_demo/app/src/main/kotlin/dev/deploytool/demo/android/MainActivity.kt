package dev.deploytool.demo.android

import android.app.Activity
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.Typeface
import android.os.Bundle
import android.os.SystemClock
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import dev.deploytool.demo.core.ImageMath
import dev.deploytool.demo.core.Manifest
import java.io.File
import kotlin.math.roundToInt
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor

/** Classifies assets/sample.png with assets/model.pte and shows the top-5 and the latency. */
class MainActivity : Activity() {

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val image = ImageView(this).apply { adjustViewBounds = true }
        val text = TextView(this).apply {
            typeface = Typeface.MONOSPACE
            textSize = 15f
            setPadding(0, 32, 0, 0)
        }
        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(40, 40, 40, 40)
            addView(image, LinearLayout.LayoutParams.MATCH_PARENT, 600)
            addView(text)
        }
        setContentView(ScrollView(this).apply { addView(column) })

        val sample = assets.open("sample.png").use { BitmapFactory.decodeStream(it) }
        image.setImageBitmap(sample)
        text.text = "Running…"
        // Model loading and inference block, so keep them off the UI thread.
        Thread {
            val report = try {
                classify(sample)
            } catch (e: Exception) {
                "Failed: ${e.message}\n\nRun `deploytool export --target android --into android_demo` " +
                    "to put model.pte and manifest.json into app/src/main/assets/."
            }
            runOnUiThread { text.text = report }
        }.start()
    }

    private fun classify(sample: Bitmap): String {
        val manifest = Manifest.parse(assets.open("manifest.json").bufferedReader().use { it.readText() })
        val module = Module.load(assetToFile(manifest.artifactFile).absolutePath)
        try {
            val w = manifest.inputWidth
            val h = manifest.inputHeight
            val pixels = IntArray(w * h)
            fitToInput(sample, manifest).getPixels(pixels, 0, w, 0, 0, w, h)
            val input = ImageMath.normalize(pixels, w, h, manifest.preprocess)
            val tensor = Tensor.fromBlob(input, manifest.inputShape.toLongArray())

            module.loadMethod("forward") // so the timing below excludes method loading
            val start = SystemClock.elapsedRealtimeNanos()
            val logits = module.forward(EValue.from(tensor))[0].toTensor().getDataAsFloatArray()
            val ms = (SystemClock.elapsedRealtimeNanos() - start) / 1e6

            val top = ImageMath.topK(ImageMath.softmax(logits), 5, manifest::label)
            return buildString {
                append("model   ${manifest.model}\n")
                append("runtime ExecuTorch ${manifest.executorchVersion ?: "?"}\n")
                append("latency ${"%.1f".format(ms)} ms\n\n")
                for (p in top) append("${"%5.1f".format(p.probability * 100)}%  ${p.label}\n")
            }
        } finally {
            module.destroy()
        }
    }

    /** Module.load needs a real file path, and assets live inside the APK: copy out once. */
    private fun assetToFile(name: String): File {
        val file = File(filesDir, name)
        if (!file.exists() || file.length() != assets.openFd(name).use { it.length }) {
            assets.open(name).use { src -> file.outputStream().use { src.copyTo(it) } }
        }
        return file
    }

    /**
     * Manifest resize (shorter side, bilinear) then center crop, done with Bitmap APIs; the core
     * takes pixels already at the input size. Without resize/crop, scale straight to the input.
     */
    private fun fitToInput(src: Bitmap, manifest: Manifest): Bitmap {
        val pre = manifest.preprocess
        var bmp = src
        val resize = pre.resize
        if (resize != null) {
            val s = resize.toFloat() / minOf(bmp.width, bmp.height)
            bmp = Bitmap.createScaledBitmap(bmp, (bmp.width * s).roundToInt(), (bmp.height * s).roundToInt(), true)
        }
        val crop = pre.centerCrop
        if (crop != null && bmp.width >= crop[1] && bmp.height >= crop[0]) {
            bmp = Bitmap.createBitmap(bmp, (bmp.width - crop[1]) / 2, (bmp.height - crop[0]) / 2, crop[1], crop[0])
        }
        if (bmp.width != manifest.inputWidth || bmp.height != manifest.inputHeight) {
            bmp = Bitmap.createScaledBitmap(bmp, manifest.inputWidth, manifest.inputHeight, true)
        }
        return bmp
    }
}
