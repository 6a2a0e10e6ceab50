import DemoCore
import SwiftUI

/// Shows Model/sample.png, then the top-5 predictions of Model/model.pte and the latency.
struct ContentView: View {
    @State private var result: Classification?
    @State private var error: String?
    private let sample = Bundle.main.path(forResource: "sample", ofType: "png", inDirectory: "Model")
        .flatMap(UIImage.init(contentsOfFile:))

    var body: some View {
        ScrollView {
            VStack(alignment: .leading, spacing: 16) {
                if let sample {
                    Image(uiImage: sample).resizable().scaledToFit().frame(maxHeight: 300)
                }
                if let result {
                    Text("\(result.model) · ExecuTorch \(result.executorchVersion ?? "?")").font(.headline)
                    Text(String(format: "latency %.1f ms", result.latencyMs)).font(.subheadline)
                    ForEach(result.predictions, id: \.index) { p in
                        HStack {
                            Text(String(format: "%5.1f%%", p.probability * 100)).monospacedDigit()
                            Text(p.label)
                        }
                    }
                } else if let error {
                    Text(error).foregroundStyle(.red)
                } else {
                    ProgressView("Running…")
                }
            }
            .padding()
        }
        .task { await run() }
    }

    private func run() async {
        guard let sample else {
            error = "Model/sample.png is missing from the app bundle."
            return
        }
        // Loading and inference block: keep them off the main actor.
        let outcome = await Task.detached(priority: .userInitiated) {
            Result { try Classifier().classify(sample) }
        }.value
        switch outcome {
        case .success(let value): result = value
        case .failure(let failure):
            error = "\(failure.localizedDescription)\n\nRun `deploytool export --target ios --into ios_demo` "
                + "to put model.pte and manifest.json into DemoApp/Model/."
        }
    }
}
