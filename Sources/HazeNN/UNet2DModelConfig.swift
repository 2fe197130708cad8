import Foundation

/// The configuration of a `UNet2DModel`, read from and written to diffusers' `config.json`
/// (every field UNet2DModel uses, same names and defaults as diffusers 0.42), plus two Haze-only
/// fields: `norm_type` ("group" | "batch") and `attention_type` ("softmax" | "linear" | "none").
public struct UNet2DModelConfig: Equatable, Sendable {
    /// The attention of the attention blocks (`attention_type`): softmax (diffusers), linear, or
    /// none (the attention blocks then have no attention layer).
    public enum AttentionType: String, Sendable { case softmax, linear, none }
    /// How class labels are embedded (`class_embed_type`): the timestep MLP on their sinusoidal
    /// features, or the labels taken as embeddings; nil with `num_class_embeds` is a lookup table.
    public enum ClassEmbedType: String, Sendable { case timestep, identity }

    /// [H, W] of the images the model was made for (`sample_size`: a number for a square, or a
    /// pair), or nil when the file has none.
    public var sampleSize: [Int]? = nil
    /// Channels of the input image (`in_channels`).
    public var inChannels = 3
    /// Channels of the output (`out_channels`), usually equal to the input's.
    public var outChannels = 3
    /// Map the input from [0, 1] to [−1, 1] first, 2x − 1 (`center_input_sample`).
    public var centerInputSample = false
    /// Width of the time embedding (`time_embedding_dim`); nil: 4 × the first block's channels.
    public var timeEmbeddingDim: Int? = nil
    /// `freq_shift` of the sinusoidal timestep features (`Timesteps.frequencyShift`).
    public var freqShift: Float = 0
    /// Order of the timestep features: [cos, sin] when true (`flip_sin_to_cos`).
    public var flipSinToCos = true
    /// One per resolution, from the highest (`down_block_types`): "DownBlock2D" or "AttnDownBlock2D".
    public var downBlockTypes = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
    /// "UNetMidBlock2D", or nil for no middle block (`mid_block_type`).
    public var midBlockType: String? = "UNetMidBlock2D"
    /// One per resolution, from the lowest (`up_block_types`): "UpBlock2D" or "AttnUpBlock2D".
    public var upBlockTypes = ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
    /// Output channels of each down block, from the highest resolution (`block_out_channels`).
    public var blockOutChannels = [224, 448, 672, 896]
    /// Resnets per down block (`layers_per_block`); the up blocks have one more.
    public var layersPerBlock = 2
    /// Output divisor of the middle block's resnets and attention (`mid_block_scale_factor`).
    public var midBlockScaleFactor: Float = 1
    /// Padding of the downsampling convolutions (`downsample_padding`): 1, or 0 for an asymmetric
    /// (0, 1, 0, 1) pad.
    public var downsamplePadding = 1
    /// Dropout probability in every resnet (`dropout`), in training only.
    public var dropout: Float = 0
    /// Features per attention head (`attention_head_dim`); nil: one head over all channels.
    public var attentionHeadDim: Int? = 8
    /// Groups of the group norms (`norm_num_groups`).
    public var normNumGroups = 32
    /// Groups of the middle attention's norm (`attn_norm_num_groups`); nil: `normNumGroups` with the
    /// default time-embedding norm, no norm with scale_shift.
    public var attnNormNumGroups: Int? = nil
    /// ε of the norms (`norm_eps`).
    public var normEps: Float = 1e-5
    /// How the resnets take the time embedding (`resnet_time_scale_shift`).
    public var resnetTimeScaleShift: ResnetBlock2D.TimeEmbeddingNorm = .default
    /// Whether the middle block has attention (`add_attention`).
    public var addAttention = true
    /// The class embedding of a conditional model (`class_embed_type`), or nil.
    public var classEmbedType: ClassEmbedType? = nil
    /// Rows of the class-embedding table (`num_class_embeds`), or nil; with classifier-free guidance
    /// the last row is the null class.
    public var numClassEmbeds: Int? = nil
    // Haze-only options.
    /// Haze only (`norm_type`): group norm (diffusers) or batch norm.
    public var normType: NormKind = .group
    /// Haze only (`attention_type`).
    public var attentionType: AttentionType = .softmax

    /// diffusers' defaults (those of `UNet2DModel()` in Python).
    public init() {}

    /// Embedding width of the time (and class) conditioning.
    public var timeEmbedDimension: Int { timeEmbeddingDim ?? blockOutChannels[0] * 4 }
    /// Whether the model takes class labels.
    public var isClassConditional: Bool { classEmbedType != nil || numClassEmbeds != nil }
}

/// A config.json problem: the file, the field and what is wrong with its value.
public struct ConfigError: Error, CustomStringConvertible {
    /// The path of the config file.
    public let file: String
    /// The JSON field at fault, or nil for the config as a whole.
    public let field: String?
    /// What is wrong, for the user.
    public let problem: String
    public var description: String { "\(file): " + (field.map { "field \"\($0)\": " } ?? "") + problem }
}

extension UNet2DModelConfig {
    /// Fields diffusers writes that do not change the network, accepted and ignored.
    static let ignoredFields: Set<String> = ["num_train_timesteps", "time_embedding_type", "downsample_type", "upsample_type", "act_fn"]

    /// Limits far beyond any published UNet2DModel (at most 6 blocks, 3 layers per block and 1280
    /// channels), so that a damaged config.json cannot make Haze build millions of layers or
    /// overflow its parameter arithmetic: blocks, layers per block, channel widths (in, out and
    /// block widths, sample size; the time embedding up to 4 times that), class-table rows.
    public static let maximumBlocks = 16, maximumLayersPerBlock = 64, maximumWidth = 1 << 16, maximumClasses = 1 << 20

    /// Whether a JSONSerialization value is a JSON boolean (NSNumber bridges to Bool too).
    static func isBoolean(_ v: Any) -> Bool { type(of: v) == Bool.self || type(of: v) == type(of: NSNumber(value: true)) }

    /// Reads a diffusers UNet2DModel config.json.
    public init(contentsOf path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigError(file: path, field: nil, problem: "cannot be read (\(error.localizedDescription))")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ConfigError(file: path, field: nil, problem: "is not a JSON object")
        }
        try self.init(json: object, file: path)
    }

    /// Parses a config dictionary; `file` names the source in errors. Values Haze does not
    /// support are errors that name the field and the value.
    public init(json: [String: Any], file: String) throws {
        self.init()
        func fail(_ field: String, _ problem: String) -> ConfigError { ConfigError(file: file, field: field, problem: problem) }
        func present(_ field: String) -> Any? {
            guard let v = json[field], !(v is NSNull) else { return nil }
            return v
        }
        func int(_ field: String) throws -> Int? {
            guard let v = present(field) else { return nil }
            guard let n = v as? NSNumber, !Self.isBoolean(v), Double(n.intValue) == n.doubleValue else { throw fail(field, "expected an integer, found \(v)") }
            return n.intValue
        }
        func float(_ field: String) throws -> Float? {
            guard let v = present(field) else { return nil }
            guard let n = v as? NSNumber, !Self.isBoolean(v) else { throw fail(field, "expected a number, found \(v)") }
            // 1e308 is a JSON number but an infinite Float, which config.json could not be written back with.
            guard n.floatValue.isFinite else { throw fail(field, "value \(v) is beyond the range of a 32-bit float") }
            return n.floatValue
        }
        func bool(_ field: String) throws -> Bool? {
            guard let v = present(field) else { return nil }
            guard Self.isBoolean(v), let b = v as? Bool else { throw fail(field, "expected true or false, found \(v)") }
            return b
        }
        func string(_ field: String) throws -> String? {
            guard let v = present(field) else { return nil }
            guard let s = v as? String else { throw fail(field, "expected a string, found \(v)") }
            return s
        }
        func strings(_ field: String) throws -> [String]? {
            guard let v = present(field) else { return nil }
            guard let s = v as? [String] else { throw fail(field, "expected a list of strings, found \(v)") }
            return s
        }
        func ints(_ field: String) throws -> [Int]? {
            guard let v = present(field) else { return nil }
            guard let s = v as? [NSNumber], s.allSatisfy({ !Self.isBoolean($0) && Double($0.intValue) == $0.doubleValue }) else {
                throw fail(field, "expected a list of integers, found \(v)")
            }
            return s.map(\.intValue)
        }
        func require(_ field: String, _ value: String?, in allowed: [String]) throws {
            if let value, !allowed.contains(value) {
                throw fail(field, "value \"\(value)\" is not supported by Haze (supported: \(allowed.joined(separator: ", ")))")
            }
        }

        if let v = present("sample_size") {
            if v is NSNumber, let n = try int("sample_size") { sampleSize = [n, n] }
            else if let list = try? ints("sample_size"), list.count == 2 { sampleSize = list }
            else { throw fail("sample_size", "expected an integer or [height, width], found \(v)") }
        }
        inChannels = try int("in_channels") ?? inChannels
        outChannels = try int("out_channels") ?? outChannels
        centerInputSample = try bool("center_input_sample") ?? centerInputSample
        try require("time_embedding_type", string("time_embedding_type"), in: ["positional"])
        timeEmbeddingDim = try int("time_embedding_dim")
        freqShift = try float("freq_shift") ?? freqShift
        flipSinToCos = try bool("flip_sin_to_cos") ?? flipSinToCos
        downBlockTypes = try strings("down_block_types") ?? downBlockTypes
        for t in downBlockTypes { try require("down_block_types", t, in: ["DownBlock2D", "AttnDownBlock2D"]) }
        if json.keys.contains("mid_block_type") { midBlockType = try string("mid_block_type") }
        try require("mid_block_type", midBlockType, in: ["UNetMidBlock2D"])
        upBlockTypes = try strings("up_block_types") ?? upBlockTypes
        for t in upBlockTypes { try require("up_block_types", t, in: ["UpBlock2D", "AttnUpBlock2D"]) }
        blockOutChannels = try ints("block_out_channels") ?? blockOutChannels
        layersPerBlock = try int("layers_per_block") ?? layersPerBlock
        midBlockScaleFactor = try float("mid_block_scale_factor") ?? midBlockScaleFactor
        downsamplePadding = try int("downsample_padding") ?? downsamplePadding
        try require("downsample_type", string("downsample_type"), in: ["conv"])
        try require("upsample_type", string("upsample_type"), in: ["conv"])
        dropout = try float("dropout") ?? dropout
        try require("act_fn", string("act_fn"), in: ["silu", "swish"])
        if json.keys.contains("attention_head_dim") { attentionHeadDim = try int("attention_head_dim") }
        normNumGroups = try int("norm_num_groups") ?? normNumGroups
        attnNormNumGroups = try int("attn_norm_num_groups")
        normEps = try float("norm_eps") ?? normEps
        let shift = try string("resnet_time_scale_shift") ?? "default"
        try require("resnet_time_scale_shift", shift, in: ["default", "scale_shift"])
        resnetTimeScaleShift = ResnetBlock2D.TimeEmbeddingNorm(rawValue: shift)!
        addAttention = try bool("add_attention") ?? addAttention
        let classType = try string("class_embed_type")
        try require("class_embed_type", classType, in: ["timestep", "identity"])
        classEmbedType = classType.flatMap(ClassEmbedType.init(rawValue:))
        numClassEmbeds = try int("num_class_embeds")
        let norm = try string("norm_type") ?? "group"
        try require("norm_type", norm, in: ["group", "batch"])
        normType = NormKind(rawValue: norm)!
        let attention = try string("attention_type") ?? "softmax"
        try require("attention_type", attention, in: ["softmax", "linear", "none"])
        attentionType = AttentionType(rawValue: attention)!
        try validate(file: file)
    }

    /// Checks that the numbers fit together (the checks diffusers makes, and group divisibility).
    public func validate(file: String = "config") throws {
        func fail(_ field: String, _ problem: String) -> ConfigError { ConfigError(file: file, field: field, problem: problem) }
        func check(_ field: String, _ value: Int?, _ limit: Int) throws {
            if let value, !(1...limit).contains(value) { throw fail(field, "value \(value) is not in 1…\(limit)") }
        }
        guard (1...Self.maximumBlocks).contains(blockOutChannels.count) else {
            throw fail("block_out_channels", "has \(blockOutChannels.count) entries; Haze supports 1…\(Self.maximumBlocks) blocks")
        }
        for c in blockOutChannels { try check("block_out_channels", c, Self.maximumWidth) }
        guard downBlockTypes.count == blockOutChannels.count else {
            throw fail("down_block_types", "has \(downBlockTypes.count) entries but block_out_channels has \(blockOutChannels.count)")
        }
        guard upBlockTypes.count == downBlockTypes.count else {
            throw fail("up_block_types", "has \(upBlockTypes.count) entries but down_block_types has \(downBlockTypes.count)")
        }
        guard normNumGroups > 0 else { throw fail("norm_num_groups", "must be positive, found \(normNumGroups)") }
        for c in blockOutChannels where c % normNumGroups != 0 {
            throw fail("norm_num_groups", "\(normNumGroups) does not divide block_out_channels entry \(c)")
        }
        try check("in_channels", inChannels, Self.maximumWidth)
        try check("out_channels", outChannels, Self.maximumWidth)
        try check("layers_per_block", layersPerBlock, Self.maximumLayersPerBlock)
        try check("time_embedding_dim", timeEmbeddingDim, 4 * Self.maximumWidth)
        try check("num_class_embeds", numClassEmbeds, Self.maximumClasses)
        for side in sampleSize ?? [] { try check("sample_size", side, Self.maximumWidth) }
        if downsamplePadding != 0 && downsamplePadding != 1 { throw fail("downsample_padding", "value \(downsamplePadding) is not supported by Haze (0 or 1)") }
        if let h = attentionHeadDim, h <= 0 { throw fail("attention_head_dim", "must be positive, found \(h)") }
        // The attention layers' groups and heads must fit their widths (the forward pass needs
        // whole groups and at least one head, as diffusers' modules do).
        let last = blockOutChannels[blockOutChannels.count - 1]
        let midAttention = midBlockType != nil && addAttention && attentionType != .none
        if let g = attnNormNumGroups, midAttention {
            guard g > 0, last % g == 0 else { throw fail("attn_norm_num_groups", "\(g) does not divide the middle block's \(last) channels") }
        }
        if let h = attentionHeadDim, attentionType == .softmax {
            var widths: [Int] = midAttention ? [last] : []
            for (type, c) in zip(downBlockTypes, blockOutChannels) where type == "AttnDownBlock2D" { widths.append(c) }
            for (type, c) in zip(upBlockTypes, blockOutChannels.reversed()) where type == "AttnUpBlock2D" { widths.append(c) }
            for c in widths where h > c {
                throw fail("attention_head_dim", "\(h) is larger than the \(c) channels of an attention block (no whole head)")
            }
        }
    }

    /// A Float as the Double with the same shortest decimal form (1e-5, not 9.99999974737875e-06).
    private func decimal(_ x: Float) -> Any { x == x.rounded() && abs(x) < 1e9 ? Int(x) as Any : Double("\(x)")! }

    /// The config as diffusers writes it (with `_class_name`), plus Haze's own fields.
    public func jsonObject() -> [String: Any] {
        var o: [String: Any] = [
            "_class_name": "UNet2DModel", "_diffusers_version": "0.42.1",
            "in_channels": inChannels, "out_channels": outChannels, "center_input_sample": centerInputSample,
            "time_embedding_type": "positional", "time_embedding_dim": timeEmbeddingDim as Any? ?? NSNull(),
            "freq_shift": decimal(freqShift),
            "flip_sin_to_cos": flipSinToCos, "down_block_types": downBlockTypes,
            "mid_block_type": midBlockType as Any? ?? NSNull(), "up_block_types": upBlockTypes,
            "block_out_channels": blockOutChannels, "layers_per_block": layersPerBlock,
            "mid_block_scale_factor": decimal(midBlockScaleFactor), "downsample_padding": downsamplePadding,
            "downsample_type": "conv", "upsample_type": "conv", "dropout": Double("\(dropout)")!, "act_fn": "silu",
            "attention_head_dim": attentionHeadDim as Any? ?? NSNull(), "norm_num_groups": normNumGroups,
            "attn_norm_num_groups": attnNormNumGroups as Any? ?? NSNull(), "norm_eps": Double("\(normEps)")!,
            "resnet_time_scale_shift": resnetTimeScaleShift.rawValue, "add_attention": addAttention,
            "class_embed_type": classEmbedType?.rawValue as Any? ?? NSNull(),
            "num_class_embeds": numClassEmbeds as Any? ?? NSNull(), "num_train_timesteps": NSNull(),
            "sample_size": sampleSize.map { $0[0] == $0[1] ? $0[0] as Any : $0 } ?? NSNull(),
        ]
        if normType != .group { o["norm_type"] = normType.rawValue }
        if attentionType != .softmax { o["attention_type"] = attentionType.rawValue }
        return o
    }

    /// Pretty-printed JSON with sorted keys.
    public func jsonData() -> Data {
        try! JSONSerialization.data(withJSONObject: jsonObject(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
