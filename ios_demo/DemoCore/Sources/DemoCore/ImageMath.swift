import Foundation

/// One ranked class of a classification result.
public struct Prediction: Equatable {
    public let index: Int
    public let label: String
    public let probability: Float
}

public enum ImageMath {
    /// RGBA8 pixels, row-major (what a CGContext with `noneSkipLast` holds), already at the model
    /// input size -> normalised input `(pixel * scale - mean[c]) / std[c]` in the manifest's
    /// colour order and layout.
    public static func normalize(rgba: [UInt8], width: Int, height: Int,
                                 preprocess p: Manifest.Preprocess) -> [Float] {
        precondition(rgba.count == width * height * 4, "expected \(width * height) RGBA pixels")
        let channels = p.channels
        let plane = width * height
        var out = [Float](repeating: 0, count: plane * channels)
        for i in 0..<plane {
            let r = Int(rgba[i * 4]), g = Int(rgba[i * 4 + 1]), b = Int(rgba[i * 4 + 2])
            let values: [Int]
            switch p.color {
            case "RGB": values = [r, g, b]
            case "BGR": values = [b, g, r]
            // Pillow's convert("L") integer formula, so the app matches a PIL-based export.
            default: values = [(r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16]
            }
            for c in 0..<channels {
                let v = (Double(values[c]) * p.scale - p.mean[c]) / p.std[c]
                out[p.layout == "NHWC" ? i * channels + c : c * plane + i] = Float(v)
            }
        }
        return out
    }

    /// Numerically stable softmax (shifts by the max logit before exp).
    public static func softmax(_ logits: [Float]) -> [Float] {
        guard let maxLogit = logits.max() else { return [] }
        let e = logits.map { exp(Double($0) - Double(maxLogit)) }
        let sum = e.reduce(0, +)
        return e.map { Float($0 / sum) }
    }

    /// The k most probable classes, best first; ties keep the lower index first.
    public static func topK(_ probs: [Float], k: Int, label: (Int) -> String) -> [Prediction] {
        let order = probs.indices.sorted { probs[$0] != probs[$1] ? probs[$0] > probs[$1] : $0 < $1 }
        return order.prefix(k).map { Prediction(index: $0, label: label($0), probability: probs[$0]) }
    }
}
