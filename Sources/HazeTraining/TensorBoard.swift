import Foundation

/// A TensorBoard event file writer (scalars and PNG images), from the TFRecord and Event/Summary
/// protobuf formats, encoded by hand: each record is
///   uint64 length, uint32 masked_crc32c(length), data, uint32 masked_crc32c(data).
public final class TensorBoardWriter {
    let handle: FileHandle
    /// The event file (`FOLDER/events.out.tfevents.TIME.HOST.haze`).
    public let path: String

    /// Creates `folder` if needed and a new event file in it. Throws when the file cannot be created.
    public init(folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "haze"
        path = "\(folder)/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).haze"
        _ = FileManager.default.createFile(atPath: path, contents: nil)  // a failure surfaces just below
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        self.handle = handle
        var event = Protobuf()
        event.double(1, Date().timeIntervalSince1970)
        event.bytes(3, Data("brain.Event:2".utf8))
        write(event.data)
    }

    deinit { try? handle.close() }

    /// Appends scalar `value` under `tag` at `step`.
    public func scalar(_ tag: String, _ value: Float, step: Int) {
        var v = Protobuf()
        v.bytes(1, Data(tag.utf8))
        v.float(2, value)
        summary(v, step: step)
    }

    /// A PNG image (already encoded).
    public func image(_ tag: String, png: Data, width: Int, height: Int, channels: Int, step: Int) {
        var image = Protobuf()
        image.varint(1, UInt64(height)); image.varint(2, UInt64(width)); image.varint(3, UInt64(channels))
        image.bytes(4, png)
        var v = Protobuf()
        v.bytes(1, Data(tag.utf8))
        v.bytes(4, image.data)
        summary(v, step: step)
    }

    private func summary(_ value: Protobuf, step: Int) {
        var summary = Protobuf()
        summary.bytes(1, value.data)
        var event = Protobuf()
        event.double(1, Date().timeIntervalSince1970)
        event.varint(2, UInt64(step))
        event.bytes(5, summary.data)
        write(event.data)
    }

    private func write(_ data: Data) {
        var record = Data()
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
        record.append(lengthBytes)
        appendUInt32(&record, Self.maskedCRC(lengthBytes))
        record.append(data)
        appendUInt32(&record, Self.maskedCRC(data))
        handle.write(record)
        try? handle.synchronize()
    }

    private func appendUInt32(_ data: inout Data, _ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) }
    }

    /// CRC-32C (Castagnoli), masked as TFRecord does: ((c >> 15) | (c << 17)) + 0xa282ead8.
    static func maskedCRC(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        crc ^= 0xFFFF_FFFF
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    static let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }
}

/// Minimal protobuf encoding (varint, fixed64 double, fixed32 float, length-delimited).
struct Protobuf {
    var data = Data()

    mutating func key(_ field: Int, _ wire: UInt64) { appendVarint(UInt64(field) << 3 | wire) }
    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { data.append(UInt8(v & 0x7F | 0x80)); v >>= 7 }
        data.append(UInt8(v))
    }
    mutating func varint(_ field: Int, _ value: UInt64) { key(field, 0); appendVarint(value) }
    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
    }
    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
    }
    mutating func bytes(_ field: Int, _ value: Data) { key(field, 2); appendVarint(UInt64(value.count)); data.append(value) }
}
