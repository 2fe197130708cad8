import HazeTensor

/// The noise predictor ε_θ(x_t, t): diffusers' UNet2DModel (Ho et al. 2020, appendix B), same
/// blocks, same parameter names, so diffusers checkpoints load and Haze models go back.
///
///   emb = time_embedding(timesteps_features(t)) [+ class_embedding(y)]
///   h = conv_in(x);  skips = [h]
///   for each down block: h, states = block(h, emb); skips += states
///   h = mid_block(h, emb)
///   for each up block: h = block(h, last skips, emb)
///   out = conv_out(SiLU(conv_norm_out(h)))
public struct UNet2DModel: Module {
    /// How the class conditioning is embedded (diffusers `class_embed_type` / `num_class_embeds`).
    public enum ClassEmbedding {
        /// nn.Embedding(num_class_embeds, time_embed_dim): `class_embedding.weight`.
        case table(classes: Int)
        /// TimestepEmbedding on the sinusoidal features of the label.
        case timestep(TimestepEmbedding)
        /// The labels are already embeddings [B, time_embed_dim].
        case identity
    }

    /// The diffusers config the model was built from (validated).
    public let config: UNet2DModelConfig
    /// `conv_in`: 3×3, in channels → the first block's channels.
    public let convIn: Conv2d
    /// The sinusoidal timestep features (as many as the first block's channels).
    public let timeProjection: Timesteps
    /// `time_embedding`: the MLP from those features to the time embedding (`timeEmbedDimension`).
    public let timeEmbedding: TimestepEmbedding
    /// `class_embedding` of a class-conditional model, or nil.
    public let classEmbedding: ClassEmbedding?
    /// `down_blocks.i`, one per entry of `blockOutChannels`, each but the last halving H and W.
    public let downBlocks: [DownBlock]
    /// `mid_block` at the lowest resolution, or nil when `mid_block_type` is null.
    public let midBlock: MidBlock?
    /// `up_blocks.i`, the down path mirrored, each but the last doubling H and W.
    public let upBlocks: [UpBlock]
    /// `conv_norm_out`, before the final SiLU.
    public let convNormOut: Norm
    /// `conv_out`: 3×3, the first block's channels → out channels.
    public let convOut: Conv2d

    /// Builds the layers a config describes (parameters are passed to each call, not held). Throws
    /// `ConfigError` when the config is invalid or asks for what Haze does not implement.
    public init(config: UNet2DModelConfig) throws {
        try config.validate()
        self.config = config
        let channels = config.blockOutChannels
        let temb = config.timeEmbedDimension
        convIn = Conv2d("conv_in", config.inChannels, channels[0], kernelSize: 3, padding: Padding2D(1))
        timeProjection = Timesteps(dimension: channels[0], flipSinToCos: config.flipSinToCos, frequencyShift: config.freqShift)
        timeEmbedding = TimestepEmbedding("time_embedding", inChannels: channels[0], embeddingDimension: temb)
        switch (config.classEmbedType, config.numClassEmbeds) {
        case (nil, let classes?): classEmbedding = .table(classes: classes)
        case (.timestep?, _): classEmbedding = .timestep(TimestepEmbedding("class_embedding", inChannels: channels[0], embeddingDimension: temb))
        case (.identity?, _): classEmbedding = .identity
        case (nil, nil): classEmbedding = nil
        }
        let settings = BlockSettings(timeChannels: temb, groups: config.normNumGroups, epsilon: config.normEps,
                                     normKind: config.normType, timeEmbeddingNorm: config.resnetTimeScaleShift,
                                     attentionType: config.attentionType, dropout: config.dropout)
        downBlocks = config.downBlockTypes.enumerated().map { i, type in
            DownBlock("down_blocks.\(i)", layers: config.layersPerBlock, inChannels: i == 0 ? channels[0] : channels[i - 1],
                      outChannels: channels[i], withAttention: type == "AttnDownBlock2D",
                      headDimension: config.attentionHeadDim ?? channels[i], addDownsample: i < channels.count - 1,
                      downsamplePadding: config.downsamplePadding, settings: settings)
        }
        let last = channels[channels.count - 1]
        // diffusers: the mid attention's GroupNorm uses attn_norm_num_groups, else norm_num_groups
        // with the default time-embedding norm, else none.
        let midGroups = config.attnNormNumGroups ?? (config.resnetTimeScaleShift == .default ? config.normNumGroups : nil)
        midBlock = config.midBlockType == nil ? nil
            : MidBlock("mid_block", channels: last, headDimension: config.attentionHeadDim ?? last, addAttention: config.addAttention,
                       attentionGroups: midGroups, scale: config.midBlockScaleFactor, settings: settings)
        let reversed = Array(channels.reversed())
        upBlocks = config.upBlockTypes.enumerated().map { i, type in
            UpBlock("up_blocks.\(i)", layers: config.layersPerBlock + 1, inChannels: reversed[min(i + 1, channels.count - 1)],
                    previousChannels: i == 0 ? reversed[0] : reversed[i - 1], outChannels: reversed[i],
                    withAttention: type == "AttnUpBlock2D", headDimension: config.attentionHeadDim ?? reversed[i],
                    addUpsample: i < channels.count - 1, settings: settings)
        }
        convNormOut = Norm("conv_norm_out", kind: config.normType, groups: config.normNumGroups, channels: channels[0], epsilon: config.normEps)
        convOut = Conv2d("conv_out", channels[0], config.outChannels, kernelSize: 3, padding: Padding2D(1))
    }

    public var parameterSpecs: [ParameterSpec] {
        var specs = convIn.parameterSpecs + timeEmbedding.parameterSpecs
        switch classEmbedding {
        case .table(let classes)?: specs.append(ParameterSpec("class_embedding.weight", [classes, config.timeEmbedDimension], .normal(std: 1)))
        case .timestep(let embedding)?: specs += embedding.parameterSpecs
        case .identity?, nil: break
        }
        return specs + downBlocks.flatMap(\.parameterSpecs) + (midBlock?.parameterSpecs ?? [])
            + upBlocks.flatMap(\.parameterSpecs) + convNormOut.parameterSpecs + convOut.parameterSpecs
    }

    /// Predicts the noise (or v / x₀, per the training objective).
    /// sample: [B, in, H, W] (H, W divisible by 2^(blocks − 1)); timesteps: B values (or one,
    /// broadcast); classLabels: [B] class indices (as floats), or [B, time_embed_dim] for the
    /// identity class embedding. → [B, out, H, W].
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], classLabels: Tensor? = nil,
                               parameters p: ParameterSet, context: ForwardContext = ForwardContext()) -> Tensor {
        let batch = sample.shape[0]
        precondition(timesteps.count == batch || timesteps.count == 1, "\(timesteps.count) timesteps for a batch of \(batch)")
        let t = timesteps.count == batch ? timesteps : Array(repeating: timesteps[0], count: batch)
        var emb = timeEmbedding(timeProjection(t), p)
        if let classEmbedding {
            guard let labels = classLabels else { preconditionFailure("class-conditional model called without class labels") }
            switch classEmbedding {
            case .table: emb = emb + Tensor.embedding(p.value("class_embedding.weight"), indices: labels.scalars.map { Int($0) })
            case .timestep(let embedding): emb = emb + embedding(timeProjection(labels.scalars), p)
            case .identity: emb = emb + labels
            }
        }
        var h = convIn(config.centerInputSample ? sample * 2 - 1 : sample, p)
        var skips = [h]
        for block in downBlocks {
            let (out, states) = block(h, emb, p, context)
            h = out
            skips += states
        }
        if let midBlock { h = midBlock(h, emb, p, context) }
        for block in upBlocks {
            let taken = Array(skips.suffix(block.resnets.count))
            skips.removeLast(block.resnets.count)
            h = block(h, skips: taken, emb, p, context)
        }
        return convOut(normalizing: h, with: convNormOut, p, context)
    }
}
