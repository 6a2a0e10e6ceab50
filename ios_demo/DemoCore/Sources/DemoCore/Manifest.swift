import Foundation

/// deploytool's manifest.json ("deploytool.manifest/1"), as far as the demo needs it.
public struct Manifest: Codable, Equatable {
    public static let schemaID = "deploytool.manifest/1"

    public struct Artifact: Codable, Equatable {
        public let file: String
        public let sha256: String?
        public let precision: String?
        public let backend: String?
    }

    public struct TensorSpec: Codable, Equatable {
        public let name: String
        public let shape: [Int]
        public let dtype: String
    }

    public struct Preprocess: Codable, Equatable {
        public let kind: String?
        public let resize: Int?
        public let centerCrop: [Int]?  // [height, width]
        public let color: String       // "RGB", "BGR" or "L"
        public let scale: Double
        public let mean: [Double]
        public let std: [Double]
        public let layout: String      // "NCHW" or "NHWC"

        enum CodingKeys: String, CodingKey {
            case kind, resize, centerCrop = "center_crop", color, scale, mean, std, layout
        }

        public var channels: Int { color == "L" ? 1 : 3 }
    }

    public let schema: String
    public let model: String
    public let artifact: Artifact
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    public let preprocess: Preprocess
    public let labels: [String]?
    public let versions: [String: String]?

    public enum Invalid: Error, Equatable {
        case schema(String)
        case input(String)
        case preprocess(String)
    }

    /// Decodes and validates; throws `Invalid` for manifests the app cannot run.
    public static func decode(_ data: Data) throws -> Manifest {
        let manifest = try JSONDecoder().decode(Manifest.self, from: data)
        try manifest.validate()
        return manifest
    }

    public func validate() throws {
        guard schema == Manifest.schemaID else { throw Invalid.schema(schema) }
        guard inputs.first?.shape.count == 4 else { throw Invalid.input("expected one 4-D image input") }
        try preprocess.validate()
    }

    public var inputShape: [Int] { inputs[0].shape }
    public var inputHeight: Int { preprocess.layout == "NHWC" ? inputShape[1] : inputShape[2] }
    public var inputWidth: Int { preprocess.layout == "NHWC" ? inputShape[2] : inputShape[3] }

    /// Label for a class index; the index itself when the model has no labels.
    public func label(_ index: Int) -> String {
        guard let labels = labels, index < labels.count else { return String(index) }
        return labels[index]
    }
}

extension Manifest.Preprocess {
    public func validate() throws {
        guard ["RGB", "BGR", "L"].contains(color) else { throw Manifest.Invalid.preprocess("color \(color)") }
        guard ["NCHW", "NHWC"].contains(layout) else { throw Manifest.Invalid.preprocess("layout \(layout)") }
        guard mean.count == channels, std.count == channels else {
            throw Manifest.Invalid.preprocess("mean/std need \(channels) values for color \(color)")
        }
    }
}
