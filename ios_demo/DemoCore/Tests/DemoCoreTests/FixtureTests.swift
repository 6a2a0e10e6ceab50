import Foundation
import XCTest
@testable import DemoCore

/// The shared cross-language fixture (tests/demos/fixture.json), also checked by the Kotlin core.
struct Fixture: Decodable {
    struct Image: Decodable {
        let height: Int
        let width: Int
        let pixels: [[[UInt8]]]  // [H][W][R, G, B]
    }

    struct Case: Decodable {
        let name: String
        let preprocess: Manifest.Preprocess
        let shape: [Int]
        let expectedInput: [Double]
        enum CodingKeys: String, CodingKey { case name, preprocess, shape, expectedInput = "expected_input" }
    }

    struct TopK: Decodable {
        let k: Int
        let indices: [Int]
        let labels: [String]
        let probabilities: [Double]
    }

    struct Tolerance: Decodable {
        let input: Double
        let probability: Double
    }

    let manifest: Manifest
    let image: Image
    let expectedInput: [Double]
    let cases: [Case]
    let logits: [Double]
    let expectedProbabilities: [Double]
    let expectedTopk: TopK
    let tolerance: Tolerance

    enum CodingKeys: String, CodingKey {
        case manifest, image, cases, logits, tolerance
        case expectedInput = "expected_input"
        case expectedProbabilities = "expected_probabilities"
        case expectedTopk = "expected_topk"
    }

    static func load() throws -> Fixture {
        // Tests/DemoCoreTests/FixtureTests.swift -> repository root, unless overridden.
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { url.deleteLastPathComponent() }
        url.appendPathComponent("tests/demos/fixture.json")
        if let override = ProcessInfo.processInfo.environment["DEPLOYTOOL_FIXTURE"] {
            url = URL(fileURLWithPath: override)
        }
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// The image as RGBA8 bytes, as the app gets them from a CGContext.
    var rgba: [UInt8] {
        image.pixels.flatMap { row in row.flatMap { $0 + [255] } }
    }
}

final class FixtureTests: XCTestCase {
    var fixture: Fixture!

    override func setUpWithError() throws {
        fixture = try Fixture.load()
    }

    private func assertClose(_ got: [Float], _ want: [Double], _ tol: Double, _ what: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, "\(what): size", file: file, line: line)
        for (i, (g, w)) in zip(got, want).enumerated() where abs(Double(g) - w) > tol {
            XCTFail("\(what)[\(i)]: \(g) != \(w)", file: file, line: line)
        }
    }

    func testManifest() throws {
        try fixture.manifest.validate()
        XCTAssertEqual(fixture.manifest.inputHeight, fixture.image.height)
        XCTAssertEqual(fixture.manifest.inputWidth, fixture.image.width)
    }

    func testNormalize() {
        let f = fixture!
        let got = ImageMath.normalize(rgba: f.rgba, width: f.image.width, height: f.image.height,
                                      preprocess: f.manifest.preprocess)
        assertClose(got, f.expectedInput, f.tolerance.input, "expected_input")
        for c in f.cases {
            XCTAssertNoThrow(try c.preprocess.validate())
            let got = ImageMath.normalize(rgba: f.rgba, width: f.image.width, height: f.image.height,
                                          preprocess: c.preprocess)
            assertClose(got, c.expectedInput, f.tolerance.input, "cases.\(c.name)")
        }
    }

    func testSoftmaxAndTopK() {
        let f = fixture!
        let probs = ImageMath.softmax(f.logits.map { Float($0) })
        assertClose(probs, f.expectedProbabilities, f.tolerance.probability, "expected_probabilities")
        let top = ImageMath.topK(probs, k: f.expectedTopk.k, label: f.manifest.label)
        XCTAssertEqual(top.map(\.index), f.expectedTopk.indices)
        XCTAssertEqual(top.map(\.label), f.expectedTopk.labels)
        assertClose(top.map(\.probability), f.expectedTopk.probabilities, f.tolerance.probability, "topk")
    }

    func testManifestEdgeCases() throws {
        let text = """
        {"schema": "deploytool.manifest/1", "model": "m", "artifact": {"file": "model.pte"},
         "inputs": [{"name": "x", "shape": [1, 2, 2, 1], "dtype": "float32"}],
         "outputs": [{"name": "y", "shape": [1, 3], "dtype": "float32"}],
         "preprocess": {"kind": "image", "resize": null, "center_crop": null, "color": "L",
                        "scale": 1.0, "mean": [0], "std": [1], "layout": "NHWC"},
         "labels": null}
        """
        let m = try Manifest.decode(Data(text.utf8))
        XCTAssertEqual(m.label(2), "2")
        XCTAssertEqual(m.inputHeight, 2)
        XCTAssertNil(m.preprocess.centerCrop)
        let bad = text.replacingOccurrences(of: "\"L\"", with: "\"CMYK\"")
        XCTAssertThrowsError(try Manifest.decode(Data(bad.utf8)))
    }
}
