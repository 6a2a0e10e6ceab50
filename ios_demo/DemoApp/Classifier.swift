import CoreGraphics
import DemoCore
import ExecuTorch
import Foundation
import UIKit

struct Classification {
    let model: String
    let executorchVersion: String?
    let predictions: [Prediction]
    let latencyMs: Double
}

enum DemoError: LocalizedError {
    case missingResource(String)
    case badImage

    var errorDescription: String? {
        switch self {
        case .missingResource(let name): return "Model/\(name) is missing from the app bundle."
        case .badImage: return "Could not read the image pixels."
        }
    }
}

/// Runs the bundled model.pte as described by the bundled manifest.json.
final class Classifier {
    let manifest: Manifest
    private let module: Module

    init(bundle: Bundle = .main) throws {
        guard let manifestURL = bundle.url(forResource: "manifest", withExtension: "json", subdirectory: "Model") else {
            throw DemoError.missingResource("manifest.json")
        }
        manifest = try Manifest.decode(Data(contentsOf: manifestURL))
        let file = manifest.artifact.file as NSString
        guard let modelPath = bundle.path(forResource: file.deletingPathExtension, ofType: file.pathExtension,
                                          inDirectory: "Model") else {
            throw DemoError.missingResource(manifest.artifact.file)
        }
        module = Module(filePath: modelPath)
        try module.load("forward")  // so the timing below excludes method loading
    }

    func classify(_ image: UIImage) throws -> Classification {
        guard let cgImage = image.cgImage, let rgba = pixels(of: cgImage) else { throw DemoError.badImage }
        let input = ImageMath.normalize(rgba: rgba, width: manifest.inputWidth, height: manifest.inputHeight,
                                        preprocess: manifest.preprocess)
        let tensor = Tensor<Float>(input, shape: manifest.inputShape)

        let start = DispatchTime.now().uptimeNanoseconds
        let output = try Tensor<Float>(module.forward(tensor))
        let latencyMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6

        let probs = ImageMath.softmax(output.scalars())
        return Classification(model: manifest.model, executorchVersion: manifest.versions?["executorch"],
                              predictions: ImageMath.topK(probs, k: 5, label: manifest.label),
                              latencyMs: latencyMs)
    }

    /// Manifest resize (shorter side) + center crop in a single CoreGraphics draw into an RGBA8
    /// buffer of the model input size; the core takes pixels already at that size.
    private func pixels(of image: CGImage) -> [UInt8]? {
        let w = manifest.inputWidth, h = manifest.inputHeight
        let srcW = Double(image.width), srcH = Double(image.height)
        var drawW = Double(w), drawH = Double(h)  // no resize and no crop: stretch to the input
        if let resize = manifest.preprocess.resize {
            let s = Double(resize) / min(srcW, srcH)
            drawW = (srcW * s).rounded()
            drawH = (srcH * s).rounded()
        } else if manifest.preprocess.centerCrop != nil {
            drawW = srcW
            drawH = srcH
        }
        var buffer = [UInt8](repeating: 0, count: w * h * 4)
        let drawn: Bool = buffer.withUnsafeMutableBytes { raw in
            guard let context = CGContext(data: raw.baseAddress, width: w, height: h, bitsPerComponent: 8,
                                          bytesPerRow: w * 4, space: CGColorSpaceCreateDeviceRGB(),
                                          bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue) else { return false }
            context.interpolationQuality = .medium
            // Centred, so the part that falls outside the w x h context is the center crop.
            context.draw(image, in: CGRect(x: (Double(w) - drawW) / 2, y: (Double(h) - drawH) / 2,
                                           width: drawW, height: drawH))
            return true
        }
        return drawn ? buffer : nil
    }
}
