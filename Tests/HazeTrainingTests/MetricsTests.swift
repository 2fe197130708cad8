import Foundation
import XCTest
import HazeIO
import HazeTensor
@testable import HazeTraining

/// FID and KID against numpy/scipy (pytorch-fid's FID, torch-fidelity's KID), from
/// scripts/make_metric_fixtures.py; and the classifier used for their features.
final class MetricsTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/metrics.safetensors").path

    func testFrechetDistanceAndKIDMatchReference() throws {
        let f = try SafeTensors.read(contentsOf: Self.fixture)
        let (a, b, a2) = (try f.tensor("a"), try f.tensor("b"), try f.tensor("a2"))
        let sa = SampleMetrics.Statistics(features: a), sb = SampleMetrics.Statistics(features: b)
        XCTAssertEqual(SampleMetrics.frechetDistance(sa, sb), Double(f.metadata["fid_f64"]!)!, accuracy: 1e-9 * 26)
        XCTAssertEqual(SampleMetrics.frechetDistance(sa, sa), 0, accuracy: 1e-6)
        XCTAssertEqual(SampleMetrics.frechetDistance(SampleMetrics.Statistics(features: a2), sb),
                       Double(try f.tensor("fid_rank_deficient").scalar), accuracy: 1e-5 * 34)
        func rows(_ key: String) throws -> [[Int]] {
            let t = try f.tensor(key)
            return (0..<t.shape[0]).map { i in (0..<t.shape[1]).map { Int(t.scalars[i * t.shape[1] + $0]) } }
        }
        let subsets = zip(try rows("kid_subsets_a"), try rows("kid_subsets_b")).map { (a: $0, b: $1) }
        let kid = SampleMetrics.kernelInceptionDistance(a, b, subsets: subsets)
        for (value, expected) in zip(kid.values, try f.tensor("kid_values").scalars) {
            XCTAssertEqual(value, Double(expected), accuracy: 1e-5 * abs(Double(expected)))
        }
        XCTAssertEqual(kid.mean, Double(try f.tensor("kid_mean").scalar), accuracy: 1e-5 * 4.6)
        XCTAssertEqual(kid.std, Double(try f.tensor("kid_std").scalar), accuracy: 1e-4 * 0.375)
    }

    func testEigendecomposition() throws {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3, eigenvectors (1, −1)/√2 and (1, 1)/√2.
        let (values, vectors) = try XCTUnwrap(symmetricEigendecomposition([2, 1, 1, 2], n: 2))
        XCTAssertEqual(values[0], 1, accuracy: 1e-12)
        XCTAssertEqual(values[1], 3, accuracy: 1e-12)
        XCTAssertEqual(abs(vectors[2] * vectors[3] - 0.5), 0, accuracy: 1e-12)
        XCTAssertEqual(vectors[0] * vectors[1], -0.5, accuracy: 1e-12)
    }

    func testClassifierGradientsAndLearning() throws {
        let net = ImageClassifier(classes: 3)
        let p = net.initialParameters(seed: 1)
        let x = Tensor.normal([4, 1, 28, 28], seed: 2)
        let labels = [0, 2, 1, 2]
        let (loss, g) = valueWithGradient(at: p) { ImageClassifier.crossEntropy(net(x, $0).logits, labels: labels) }
        XCTAssertEqual(loss.scalar, Float(Foundation.log(3.0)), accuracy: 0.3, "near-uniform predictions at initialisation")
        // Central difference on one weight of each layer.
        for name in ["conv1.weight", "conv2.bias", "fc1.weight", "fc2.bias"] {
            var plus = p, minus = p
            plus[name]!.withMutableScalars { $0[1] += 1e-2 }
            minus[name]!.withMutableScalars { $0[1] -= 1e-2 }
            let numeric = (ImageClassifier.crossEntropy(net(x, plus).logits, labels: labels).scalar
                           - ImageClassifier.crossEntropy(net(x, minus).logits, labels: labels).scalar) / 2e-2
            XCTAssertEqual(g[name]!.scalars[1], numeric, accuracy: 1e-3 + 2e-2 * abs(numeric), name)
        }
    }

    func testCommittedClassifierAccuracyOnFashionMNIST() throws {
        let weights = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("assets/fmnist-classifier.safetensors").path
        guard FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") else { throw XCTSkip("Fashion-MNIST not installed") }
        let file = try SafeTensors.read(contentsOf: weights)
        let test = try HazeData.MNISTDataset(folder: "/usr/share/datasets/fashion-mnist", split: .test)
        let accuracy = ImageClassifier().accuracy(on: test, parameters: file.tensors)
        XCTAssertGreaterThanOrEqual(accuracy, 0.90, "the committed classifier reaches 90% on the test split")
        XCTAssertEqual(accuracy, Double(file.metadata["test_accuracy"]!)!, accuracy: 1e-3)
    }
}
import HazeData
