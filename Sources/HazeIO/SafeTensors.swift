import Foundation
import HazeTensor

/// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
/// JSON `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
/// "__metadata__": {"key": "value"}}`, then the tensor bytes (offsets relative to the end of
/// the header).
///
/// Reading accepts F32, F16, BF16 and F64 (converted to Float32) and validates everything before
/// trusting it: a damaged file gets a `SafeTensorsError` naming the file, the tensor and the
/// problem, never a crash. Writing produces F32 tensors, atomically.
public struct SafeTensors {
    /// The tensors by name.
    public var tensors: [String: Tensor]
    /// Free-form string metadata (the `__metadata__` entry).
    public var metadata: [String: String]

    /// A collection to write, or to fill by hand.
    public init(tensors: [String: Tensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Looks a tensor up, throwing an error that names the file's tensors when it is missing.
    public func tensor(_ name: String, file: String = "safetensors data") throws -> Tensor {
        guard let t = tensors[name] else {
            throw SafeTensorsError(file: file, tensor: name,
                                   problem: "no such tensor (the file has \(tensors.keys.sorted().joined(separator: ", ")))")
        }
        return t
    }
}

/// A problem with a safetensors file: which file, which tensor (if any), and what is wrong.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// The path of the file, or the name the caller gave data not read from a file.
    public let file: String
    /// The tensor concerned, or nil for a problem with the file as a whole (header, length).
    public let tensor: String?
    /// What is wrong, for the user.
    public let problem: String

    /// An error about `file` and, when given, one of its tensors.
    public init(file: String, tensor: String? = nil, problem: String) {
        (self.file, self.tensor, self.problem) = (file, tensor, problem)
    }

    public var description: String {
        "\(file): " + (tensor.map { "tensor '\($0)': " } ?? "") + problem
    }
}

/// Element types the reader understands, with their sizes in bytes.
enum SafeTensorsDType: String {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"

    var size: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .f64: 8
        }
    }

    /// Converts `count` little-endian elements at `bytes` to Float32.
    func decode(_ bytes: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .f32:
            for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .f64:
            for i in 0..<count { out[i] = Float(Double(bitPattern: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .bf16:
            for i in 0..<count {
                out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        case .f16:
            for i in 0..<count { out[i] = halfToFloat(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        }
    }
}

/// IEEE 754 binary16 → binary32, bit by bit (portable: no `Float16` type needed).
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    switch exponent {
    case 0:
        // Zero or subnormal: mantissa · 2⁻²⁴.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    case 31:
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    default:
        return Float(bitPattern: sign | UInt32(exponent + 112) << 23 | (mantissa << 13))
    }
}

extension SafeTensors {
    /// Reads and validates the file at `path`.
    public static func read(contentsOf path: String) throws -> SafeTensors {
        try decode(try mappedData(path), file: path)
    }

    private static func mappedData(_ path: String) throws -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw SafeTensorsError(file: path, problem: "cannot be read (\(error.localizedDescription))")
        }
    }

    /// One tensor's header entry: name, dtype as written, shape and bytes within the data.
    public struct Entry: Equatable {
        /// The tensor's name (state-dict key).
        public let name: String
        /// The dtype as the header writes it ("F32", "F16", "BF16", "F64").
        public let dtype: String
        /// The tensor's shape.
        public let shape: [Int]
        /// Its bytes, relative to the start of the tensor data (the header's `data_offsets`).
        public let byteRange: Range<Int>
    }

    /// Parses and validates the header (without decoding tensor data): the entries sorted by
    /// name, the metadata, and where the tensor data starts.
    static func parseHeader(_ data: Data, file: String) throws -> (entries: [Entry], metadata: [String: String], dataStart: Int) {
        func fail(_ problem: String, _ tensor: String? = nil) -> SafeTensorsError {
            SafeTensorsError(file: file, tensor: tensor, problem: problem)
        }
        guard data.count >= 8 else { throw fail("file is \(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail("header length \(headerLength) runs past the end of the file (\(data.count) bytes): truncated or not a safetensors file")
        }
        let dataStart = 8 + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart))
        } catch {
            throw fail("header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw fail("header is not a JSON object") }
        let payload = data.count - dataStart

        var metadata: [String: String] = [:]
        if let meta = header["__metadata__"] {
            guard let strings = meta as? [String: String] else { throw fail("__metadata__ is not a string-to-string map") }
            metadata = strings
        }
        var entries: [Entry] = []
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any] else { throw fail("entry is not a JSON object", name) }
            guard let dtypeName = entry["dtype"] as? String else { throw fail("missing dtype", name) }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw fail("unsupported dtype \(dtypeName) (Haze reads F32, F16, BF16 and F64)", name)
            }
            guard let shape = (entry["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  shape.count == (entry["shape"] as? [Any])?.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("shape is missing or not a list of non-negative integers", name)
            }
            guard let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2 else {
                throw fail("data_offsets is missing or not two integers", name)
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= payload else {
                throw fail("data_offsets [\(begin), \(end)] lie outside the \(payload) bytes of tensor data", name)
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, n in
                let (p, o) = acc.0.multipliedReportingOverflow(by: n)
                return (p, acc.1 || o)
            }
            guard !overflow, elements.multipliedReportingOverflow(by: dtype.size).partialValue == end - begin else {
                throw fail("shape \(shape) × \(dtypeName) needs \(overflow ? "too many" : String(elements * dtype.size)) bytes but data_offsets span \(end - begin)", name)
            }
            entries.append(Entry(name: name, dtype: dtypeName, shape: shape, byteRange: begin..<end))
        }
        let byOffset = entries.sorted { ($0.byteRange.lowerBound, $0.byteRange.upperBound) < ($1.byteRange.lowerBound, $1.byteRange.upperBound) }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.byteRange.overlaps(b.byteRange) {
            throw fail("data overlaps that of tensor '\(a.name)'", b.name)
        }
        return (entries.sorted { $0.name < $1.name }, metadata, dataStart)
    }

    /// The validated header entries and metadata of the file at `path` (no tensor decoding).
    public static func entries(contentsOf path: String) throws -> (entries: [Entry], metadata: [String: String]) {
        let (entries, metadata, _) = try parseHeader(try mappedData(path), file: path)
        return (entries, metadata)
    }

    /// Decodes safetensors bytes; `file` names the source in errors. The tensors are decoded on
    /// the worker threads: a model's hundreds of megabytes are copied (or converted) and their
    /// pages faulted in, which on one thread was most of `haze sample`'s loading time.
    public static func decode(_ data: Data, file: String) throws -> SafeTensors {
        let (entries, metadata, dataStart) = try parseHeader(data, file: file)
        var decoded = [Tensor?](repeating: nil, count: entries.count)
        data.withUnsafeBytes { raw in
            decoded.withUnsafeMutableBufferPointer { slots in
                let bytes = entries.reduce(0) { $0 + $1.byteRange.count }
                Parallel.forEach(entries.count, cost: bytes / Swift.max(entries.count, 1)) { range in
                    for i in range {
                        let entry = entries[i], dtype = SafeTensorsDType(rawValue: entry.dtype)!
                        slots[i] = Tensor(shape: entry.shape) { out, count in
                            dtype.decode(raw.baseAddress! + dataStart + entry.byteRange.lowerBound, count: count, into: out)
                        }
                    }
                }
            }
        }
        var result = SafeTensors(metadata: metadata)
        for (entry, tensor) in zip(entries, decoded) { result.tensors[entry.name] = tensor! }
        return result
    }

    /// Encodes all tensors as F32, in name order, with the header padded to 8 bytes.
    public func encoded() -> Data {
        let names = tensors.keys.sorted()
        var entries: [String] = []
        var offset = 0
        for name in names {
            let t = tensors[name]!
            let size = t.count * 4
            entries.append("\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            entries.insert("\"__metadata__\":{\(pairs.joined(separator: ","))}", at: 0)
        }
        var header = Array("{\(entries.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        var data = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: header)
        for name in names {
            tensors[name]!.scalars.withUnsafeBufferPointer { buffer in
                #if _endian(big)
                for v in buffer { withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
                #else
                data.append(UnsafeBufferPointer(start: buffer.baseAddress, count: buffer.count))
                #endif
            }
        }
        return data
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    public func write(to path: String) throws {
        try AtomicFile.write(encoded(), to: path)
    }
}

/// A JSON string literal for `s`.
func jsonString(_ s: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
    let array = String(decoding: data, as: UTF8.self)
    return String(array.dropFirst().dropLast())
}
