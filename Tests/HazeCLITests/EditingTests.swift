import Foundation
import XCTest
import HazeIO
import HazeTensor

/// Image editing commands end to end on the small `attn` model (3×8×8): inpaint, encode,
/// interpolate, and their bad input.
extension CLITests {
    /// Writes `pixels` (interleaved, `channels` per pixel) as an 8×8 PNG.
    func writePNG(_ name: String, channels: Int, _ pixels: [UInt8]) throws -> String {
        let path = folder + "/" + name
        try PNG.encode(width: 8, height: 8, channels: channels, pixels: pixels).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testInpaintKeepsTheKnownRegion() throws {
        let model = Self.unetFixtures + "/attn"
        let original = Tensor.uniform([1, 3, 8, 8], low: -1, high: 1, seed: 21)
        let image = try writePNG("image.png", channels: 3, PNG.pixels(original)[0])
        // Keep the left half (white), fill the right half (black).
        let mask = try writePNG("mask.png", channels: 1, (0..<64).map { $0 % 8 < 4 ? 255 : 0 })
        let tensor = folder + "/inpaint.safetensors", grid = folder + "/inpaint.png"
        let run = try haze(["inpaint", "--model", model, "--image", image, "--mask", mask, "--steps", "10", "--jump-length", "2",
                            "--jump-n-sample", "2", "--count", "3", "--out", grid, "--save-tensor", tensor, "--out-dir", folder + "/filled"])
        XCTAssertEqual(run.status, 0, run.err)
        let filled = try SafeTensors.read(contentsOf: tensor).tensor("sample")
        XCTAssertEqual(filled.shape, [3, 3, 8, 8])
        // The kept half is the image (its last step is the image itself, √ᾱ = 1), up to 8-bit rounding.
        let pngImage = Tensor(shape: [1, 3, 8, 8], scalars: try ImageDecoder.decode(contentsOf: image).tensor().scalars)
        for k in 0..<3 {
            for c in 0..<3 { for y in 0..<8 { for x in 0..<4 {
                let i = ((k * 3 + c) * 8 + y) * 8 + x, j = (c * 8 + y) * 8 + x
                XCTAssertEqual(filled.scalars[i], pngImage.scalars[j], accuracy: 1e-4, "completion \(k) kept pixel")
            } } }
        }
        XCTAssertNotEqual(filled.slice(0..<1), filled.slice(1..<2), "completions differ")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder + "/filled").count, 3)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: grid)).prefix(4), Data([0x89, 0x50, 0x4E, 0x47]))

        func expectFailure(_ arguments: [String], _ text: String, line: UInt = #line) throws {
            let r = try haze(["inpaint", "--model", model, "--save-tensor", tensor, "--steps", "4"] + arguments)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.err.contains(text), "stderr: \(r.err)", line: line)
        }
        let grey = try writePNG("grey.png", channels: 1, (0..<64).map { $0 % 8 < 4 ? 255 : 100 })
        try expectFailure(["--image", image, "--mask", grey], "grey.png: the mask is not black and white (32 of 64 pixels are grey)")
        let small = folder + "/small.png"
        try PNG.encode(width: 4, height: 4, channels: 1, pixels: [UInt8](repeating: 0, count: 16)).write(to: URL(fileURLWithPath: small))
        try expectFailure(["--image", image, "--mask", small], "small.png: the mask is 4×4; this model makes 8×8 images")
        try expectFailure(["--image", mask, "--mask", mask], "mask.png: the image has 1 channel; this model makes 3-channel images")
        try expectFailure(["--image", image, "--mask", try writePNG("white.png", channels: 1, [UInt8](repeating: 255, count: 64))],
                          "the mask is white everywhere")
        // A grey mask is accepted with a threshold.
        let cut = try haze(["inpaint", "--model", model, "--image", image, "--mask", grey, "--mask-threshold", "0.5", "--steps", "4",
                            "--jump-n-sample", "1", "--count", "1", "--save-tensor", tensor])
        XCTAssertEqual(cut.status, 0, cut.err)
    }

    /// --class-grid with a guidance sweep: a row per class, a block per weight, each image from the
    /// same noise at every weight (so the first block is the plain run with those labels).
    func testClassGridAndGuidanceSweep() throws {
        let model = Self.unetFixtures + "/class_cond"  // 10 class embeddings: classes 0…8 and the null class
        let grid = folder + "/grid.safetensors", plain = folder + "/plain.safetensors"
        let run = try haze(["sample", "--model", model, "--class-grid", "--count", "2", "--guidance-scale", "1,3", "--scheduler", "ddim",
                            "--steps", "5", "--save-tensor", grid, "--out", folder + "/grid.png"])
        XCTAssertEqual(run.status, 0, run.err)
        let images = try SafeTensors.read(contentsOf: grid).tensor("sample")
        XCTAssertEqual(images.shape, [36, 1, 8, 8])
        let labels = (0..<9).flatMap { [$0, $0] }.map(String.init).joined(separator: ",")
        let reference = try haze(["sample", "--model", model, "--class-labels", labels, "--guidance-scale", "1", "--scheduler", "ddim",
                                  "--steps", "5", "--save-tensor", plain])
        XCTAssertEqual(reference.status, 0, reference.err)
        let expected = try SafeTensors.read(contentsOf: plain).tensor("sample").clamped(min: -1, max: 1)
        for c in 0..<9 {  // row c: weight 1 (columns 0, 1), then weight 3 (columns 2, 3)
            XCTAssertEqual(images.slice((4 * c)..<(4 * c + 2)).clamped(min: -1, max: 1), expected.slice((2 * c)..<(2 * c + 2)), "class \(c)")
            XCTAssertNotEqual(images.slice((4 * c)..<(4 * c + 2)), images.slice((4 * c + 2)..<(4 * c + 4)), "class \(c): weights differ")
        }
        let bad = try haze(["sample", "--model", Self.unetFixtures + "/attn", "--class-grid", "--save-tensor", grid])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("--class-grid needs a class-conditional model"), bad.err)
    }

    func testEncodeAndInterpolate() throws {
        let model = Self.unetFixtures + "/attn"
        let a = try writePNG("a.png", channels: 3, PNG.pixels(Tensor.uniform([1, 3, 8, 8], low: -1, high: 1, seed: 31))[0])
        let b = try writePNG("b.png", channels: 3, PNG.pixels(Tensor.uniform([1, 3, 8, 8], low: -1, high: 1, seed: 32))[0])
        let code = folder + "/code.safetensors"
        let encoded = try haze(["encode", "--model", model, "--image", a, "--steps", "10", "--save-tensor", code, "--check"])
        XCTAssertEqual(encoded.status, 0, encoded.err)
        XCTAssertTrue(encoded.out.contains("reconstruction after 10 steps: mean |Δ|"), encoded.out)
        XCTAssertEqual(try SafeTensors.read(contentsOf: code).tensor("x_T").shape, [1, 3, 8, 8])
        // The code decodes through haze sample --initial-noise.
        let decoded = try haze(["sample", "--model", model, "--scheduler", "ddim", "--no-clip", "--steps", "10", "--initial-noise", code,
                                "--save-tensor", folder + "/back.safetensors"])
        XCTAssertEqual(decoded.status, 0, decoded.err)

        let frames = folder + "/frames.safetensors", gif = folder + "/walk.gif"
        let bySeeds = try haze(["interpolate", "--model", model, "--seeds", "3,11", "--frames", "5", "--steps", "10",
                                "--save-tensor", frames, "--gif", gif, "--out", folder + "/strip.png"])
        XCTAssertEqual(bySeeds.status, 0, bySeeds.err)
        let walk = try SafeTensors.read(contentsOf: frames).tensor("sample")
        XCTAssertEqual(walk.shape, [5, 3, 8, 8])
        // Its first frame is seed 3's DDIM sample.
        let seed3 = folder + "/seed3.safetensors"
        _ = try haze(["sample", "--model", model, "--scheduler", "ddim", "--no-clip", "--steps", "10", "--seed", "3", "--count", "1",
                      "--save-tensor", seed3])
        let first = try SafeTensors.read(contentsOf: seed3).tensor("sample").clamped(min: -1, max: 1)
        XCTAssertLessThan((walk.slice(0..<1) - first).abs().max().scalar, 1e-3)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: gif)).prefix(6), Data("GIF89a".utf8))
        let byImages = try haze(["interpolate", "--model", model, "--images", "\(a),\(b)", "--frames", "3", "--steps", "10", "--save-tensor", frames])
        XCTAssertEqual(byImages.status, 0, byImages.err)
        let bad = try haze(["interpolate", "--model", model, "--seeds", "3", "--save-tensor", frames])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("--seeds expects two non-negative integers"), bad.err)
    }
}
