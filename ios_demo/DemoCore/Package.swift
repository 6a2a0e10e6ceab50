// swift-tools-version:5.9
// Foundation-only demo logic (manifest, normalisation, softmax, top-k), kept apart from the app
// so it builds and tests with `swift test` on macOS or Linux, without ExecuTorch or UIKit.
import PackageDescription

let package = Package(
    name: "DemoCore",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [
        .library(name: "DemoCore", targets: ["DemoCore"]),
    ],
    targets: [
        .target(name: "DemoCore"),
        .testTarget(name: "DemoCoreTests", dependencies: ["DemoCore"]),
    ]
)
