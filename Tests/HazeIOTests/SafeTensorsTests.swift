import Foundation
import XCTest
import HazeTensor
@testable import HazeIO

final class SafeTensorsTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "haze-io-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// Builds a file by hand: header JSON and payload bytes.
    func rawFile(_ header: String, payload: [UInt8], declaredLength: UInt64? = nil) -> Data {
        var data = Data()
        withUnsafeBytes(of: (declaredLength ?? UInt64(header.utf8.count)).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        data.append(contentsOf: payload)
        return data
    }

    func expectError(_ data: Data, tensor: String?, containing text: String, line: UInt = #line) {
        let path = folder + "/bad.safetensors"
        try! data.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try SafeTensors.read(contentsOf: path), line: line) { error in
            guard let e = error as? SafeTensorsError else { return XCTFail("wrong error type \(error)", line: line) }
            XCTAssertEqual(e.file, path, line: line)
            XCTAssertEqual(e.tensor, tensor, line: line)
            XCTAssertTrue(e.description.contains(text), "'\(e.description)' lacks '\(text)'", line: line)
        }
    }

    func testRoundTrip() throws {
        let path = folder + "/model.safetensors"
        let file = SafeTensors(tensors: ["conv_in.weight": Tensor.normal([4, 1, 3, 3], seed: 1),
                                         "scalar": Tensor(2.5), "empty": Tensor.zeros([0, 3])],
                               metadata: ["format": "pt", "note": "quote \" and slash /"])
        try file.write(to: path)
        let back = try SafeTensors.read(contentsOf: path)
        XCTAssertEqual(back.tensors, file.tensors)
        XCTAssertEqual(back.metadata, file.metadata)
        // The header is padded to a multiple of 8 bytes, as the reference writer does.
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(n % 8, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp"), "no temporary file left behind")
    }

    func testReadsHalfBFloatAndDouble() throws {
        // 1.0, -2.0, 0.5 in F16; 1.0, -2.0 in BF16; 3.25 in F64.
        let f16: [UInt8] = [0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38]
        let bf16: [UInt8] = [0x80, 0x3F, 0x00, 0xC0]
        var f64: [UInt8] = []
        withUnsafeBytes(of: (3.25).bitPattern.littleEndian) { f64.append(contentsOf: $0) }
        let header = #"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[6,10]},"c":{"dtype":"F64","shape":[1,1],"data_offsets":[10,18]}}"#
        let decoded = try SafeTensors.decode(rawFile(header, payload: f16 + bf16 + f64), file: "mem")
        XCTAssertEqual(decoded.tensors["a"]!.scalars, [1, -2, 0.5])
        XCTAssertEqual(decoded.tensors["b"]!.scalars, [1, -2])
        XCTAssertEqual(decoded.tensors["c"]!.scalars, [3.25])
        XCTAssertEqual(decoded.tensors["c"]!.shape, [1, 1])
        // Subnormal and infinite halves.
        XCTAssertEqual(halfToFloat(0x0001), 0x1p-24)
        XCTAssertEqual(halfToFloat(0x7C00), .infinity)
        XCTAssertTrue(halfToFloat(0x7E00).isNaN)
    }

    func testTruncatedFile() {
        expectError(Data([1, 2, 3]), tensor: nil, containing: "shorter than the 8-byte header")
        let header = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        expectError(rawFile(header, payload: [], declaredLength: 4096), tensor: nil, containing: "runs past the end")
    }

    func testBadJSON() {
        expectError(rawFile("{not json", payload: []), tensor: nil, containing: "not valid JSON")
        expectError(rawFile("[1, 2]", payload: []), tensor: nil, containing: "not a JSON object")
    }

    func testOffsetsOutsideData() {
        let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        expectError(rawFile(header, payload: [UInt8](repeating: 0, count: 8)), tensor: "w", containing: "outside")
    }

    func testOverlappingTensors() {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        expectError(rawFile(header, payload: [UInt8](repeating: 0, count: 12)), tensor: "b", containing: "overlaps")
    }

    func testShapeSizeMismatch() {
        let header = #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        expectError(rawFile(header, payload: [UInt8](repeating: 0, count: 8)), tensor: "w", containing: "needs 12 bytes")
    }

    func testUnknownDType() {
        let header = #"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#
        expectError(rawFile(header, payload: [UInt8](repeating: 0, count: 8)), tensor: "w", containing: "unsupported dtype Q4")
    }

    func testMissingFileAndMissingTensor() throws {
        XCTAssertThrowsError(try SafeTensors.read(contentsOf: folder + "/nope.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("nope.safetensors"))
        }
        XCTAssertThrowsError(try SafeTensors(tensors: ["a": Tensor(1)]).tensor("b", file: "f")) { error in
            XCTAssertEqual("\(error)", "f: tensor 'b': no such tensor (the file has a)")
        }
    }

    func testAtomicWriteReplacesWholeFile() throws {
        let path = folder + "/state.json"
        try AtomicFile.write(Data("old".utf8), to: path)
        try AtomicFile.write(Data("new contents".utf8), to: path)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "new contents")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [])
        XCTAssertThrowsError(try AtomicFile.write(Data(), to: folder + "/missing-dir/x"))
    }
}
