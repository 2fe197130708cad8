import Foundation
import HazeIO

/// A diffusers `scheduler_config.json`: `_class_name` picks the scheduler; the other fields
/// configure it, with each class's own defaults for fields that are absent. Overriding the class
/// (`haze sample --scheduler`) keeps the shared fields, the betas above all, as diffusers'
/// `from_config` does.
public struct SchedulerConfig: Equatable, Sendable {
    /// The scheduler classes Haze implements; the raw value is the diffusers `_class_name`.
    public enum Kind: String, CaseIterable, Sendable {
        case ddpm = "DDPMScheduler", ddim = "DDIMScheduler", dpmSolverMultistep = "DPMSolverMultistepScheduler"
        case euler = "EulerDiscreteScheduler", eulerAncestral = "EulerAncestralDiscreteScheduler"
        case heun = "HeunDiscreteScheduler", uniPC = "UniPCMultistepScheduler"
        /// Haze's own: DDIM on the continuous cosine schedule.
        case continuousDDIM = "HazeContinuousDDIMScheduler"

        /// The short names of the CLI (`--scheduler ddim`).
        static let shortNames = ["ddpm", "ddim", "dpm++2m", "dpm++2m-sde", "unipc", "euler", "euler-a", "heun", "continuous-ddim"]

        /// The class of a short name of the CLI, or of a diffusers class name.
        public static func named(_ name: String) -> Kind? {
            ["ddpm": .ddpm, "ddim": .ddim, "dpm++2m": .dpmSolverMultistep, "dpm++2m-sde": .dpmSolverMultistep,
             "unipc": .uniPC, "euler": .euler, "euler-a": .eulerAncestral, "heun": .heun, "continuous-ddim": .continuousDDIM][name]
                ?? Kind(rawValue: name)
        }
    }

    /// How the inference timesteps are chosen among the training ones (`timestep_spacing`,
    /// Lin et al. 2024, Table 2): leading round(i·T/N) + offset, trailing round(T − i·T/N) − 1,
    /// or linspace(0, T−1, N) rounded.
    public enum Spacing: String, Sendable { case leading, trailing, linspace }

    /// The most training timesteps Haze accepts: a hundred times the usual 1000 (a schedule is
    /// arrays of this length, so a damaged file must not ask for billions).
    public static let maximumTrainTimesteps = 100_000

    /// The scheduler class (`_class_name`).
    public var kind: Kind
    /// T, the training timesteps (`num_train_timesteps`), at most `maximumTrainTimesteps`.
    public var numTrainTimesteps = 1000
    /// β at the first training step (`beta_start`), for the linear, scaled-linear and sigmoid schedules.
    public var betaStart = 0.0001
    /// β at the last training step (`beta_end`).
    public var betaEnd = 0.02
    /// The β schedule by its diffusers name: "linear", "scaled_linear", "squaredcos_cap_v2" or "sigmoid".
    public var betaSchedule = "linear"
    /// Explicit betas (`trained_betas`), which replace `betaSchedule` when given.
    public var trainedBetas: [Float]? = nil
    /// Rescale the schedule to zero terminal SNR (`rescale_betas_zero_snr`, Lin et al. 2024).
    public var rescaleBetasZeroSNR = false
    /// What the network predicts: ε, v or x₀ (`prediction_type`).
    public var predictionType: PredictionType = .epsilon
    /// Timestep spacing (`timestep_spacing`): leading for DDPM and DDIM by default, else linspace.
    public var timestepSpacing: Spacing
    /// Added to each "leading"-spaced timestep (`steps_offset`, 0 … T−1).
    public var stepsOffset = 0
    // DDPM / DDIM
    /// DDPM's posterior variance: "fixed_small" (β̃_t, Ho et al. 2020 §3.2) or "fixed_large" (β_t).
    public var varianceType = "fixed_small"
    /// Clip the predicted x₀ to ±`clipSampleRange` (`clip_sample`; DDPM and DDIM default to true).
    public var clipSample = true
    /// The bound of `clipSample` (`clip_sample_range`).
    public var clipSampleRange: Float = 1
    /// Dynamic thresholding of x₀ (Saharia et al. 2022, §2.3) instead of clipping (`thresholding`).
    public var thresholding = false
    /// The quantile of |x₀| that dynamic thresholding scales by (`dynamic_thresholding_ratio`).
    public var dynamicThresholdingRatio: Float = 0.995
    /// The largest threshold of dynamic thresholding (`sample_max_value`).
    public var sampleMaxValue: Float = 1
    /// DDIM: ᾱ before timestep 0 is 1 (true) or ᾱ_0 (`set_alpha_to_one`).
    public var setAlphaToOne = true
    // DPM-Solver
    /// Solver order (`solver_order`): 1 or 2 for DPM-Solver++, 1 to 3 for UniPC.
    public var solverOrder = 2
    /// DPM-Solver++: take the last step at first order when the run has fewer than 15 steps
    /// (`lower_order_final`).
    public var lowerOrderFinal = true
    /// DPM-Solver++ (ODE) or its SDE variant (`sde-dpmsolver++`, Lu et al. 2022 §5: fresh noise
    /// every step).
    public var stochastic = false
    /// UniPC's B(h): "bh2" (e^{−h} − 1, diffusers' default) or "bh1" (−h).
    public var uniPCSolverType = "bh2"
    // Euler, Heun, DPM-Solver
    /// How the σ are spaced for the schedulers that work in σ (`usesSigmas`): diffusers'
    /// `use_karras_sigmas` and `use_exponential_sigmas`.
    public var sigmaSpacing = SigmaSpacing.schedule
    // Continuous cosine schedule
    /// The continuous DDIM sampler's signal rate at t = 1 (`min_signal_rate`).
    public var minSignalRate = 0.02
    /// The continuous DDIM sampler's signal rate at t = 0 (`max_signal_rate`).
    public var maxSignalRate = 0.95

    /// A config with `kind`'s defaults (and the linear β schedule of Ho et al. 2020).
    public init(kind: Kind) {
        self.kind = kind
        timestepSpacing = (kind == .ddpm || kind == .ddim) ? .leading : .linspace
        clipSample = kind == .ddpm || kind == .ddim
        if kind == .heun { (betaStart, betaEnd) = (0.00085, 0.012) }  // HeunDiscreteScheduler's defaults
    }

    /// Whether the scheduler works in σ and can respace them (`SigmaSpacing`).
    public var usesSigmas: Bool { [.euler, .heun, .dpmSolverMultistep, .uniPC].contains(kind) }

    /// The scheduler of a sampling command: the model folder's `scheduler_config.json` (else
    /// DDPM with Ho et al.'s linear schedule), its class replaced by `scheduler` (a short name of
    /// `--scheduler`; `dpm++2m-sde` is DPM-Solver++ with noise) and its σ spacing by `sigmas`.
    public static func forSampling(file: String?, scheduler: String?, sigmas: SigmaSpacing?) throws -> SchedulerConfig {
        let kind = try scheduler.map { name -> Kind in
            guard let kind = Kind.named(name) else {
                throw SamplingError("unknown --scheduler \(name) (\(Kind.shortNames.joined(separator: ", ")))")
            }
            return kind
        }
        var config = try file.map { try SchedulerConfig(contentsOf: $0, kind: kind) } ?? SchedulerConfig(kind: kind ?? .ddpm)
        if let scheduler, kind == .dpmSolverMultistep { config.stochastic = scheduler == "dpm++2m-sde" }
        if let sigmas {
            guard config.usesSigmas || sigmas == .schedule else {
                throw SamplingError("--sigmas \(sigmas.rawValue) needs a scheduler that works in σ (euler, heun, dpm++2m, dpm++2m-sde, unipc), not \(config.kind.rawValue)")
            }
            config.sigmaSpacing = sigmas
        }
        return config
    }

    /// The noise schedule these fields describe.
    public var noiseSchedule: NoiseSchedule {
        let schedule: BetaSchedule
        switch betaSchedule {
        case "scaled_linear": schedule = .scaledLinear(start: betaStart, end: betaEnd)
        case "squaredcos_cap_v2": schedule = .squaredCosCapV2
        case "sigmoid": schedule = .sigmoid(start: betaStart, end: betaEnd)
        default: schedule = .linear(start: betaStart, end: betaEnd)
        }
        return NoiseSchedule(trainedBetas.map { .trained($0) } ?? schedule, trainingSteps: numTrainTimesteps,
                             rescaleZeroTerminalSNR: rescaleBetasZeroSNR)
    }
}

extension SchedulerConfig {
    /// Reads `scheduler_config.json`; `kind` overrides its `_class_name`.
    public init(contentsOf path: String, kind override: Kind? = nil) throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigFileError(file: path, field: nil, problem: "cannot be read (\(error.localizedDescription))")
        }
        // diffusers writes Python's non-standard -Infinity/Infinity/NaN; read them as strings.
        let standard = text.replacingOccurrences(of: #"(?<=[:\[,]\s{0,8})(-?Infinity|NaN)"#, with: "\"$1\"", options: .regularExpression)
        guard let json = (try? JSONSerialization.jsonObject(with: Data(standard.utf8))) as? [String: Any] else {
            throw ConfigFileError(file: path, field: nil, problem: "is not a JSON object")
        }
        try self.init(json: json, file: path, kind: override)
    }

    /// Parses a config dictionary. Unknown classes and unsupported values are errors naming them.
    /// Keys listed in `_use_default_values` (the fields diffusers filled with its class's defaults)
    /// are skipped, as diffusers' `extract_init_dict` does: with `--scheduler` another class then
    /// gets its own defaults for them (a DDPM config's "leading" spacing becomes DPM-Solver's
    /// "linspace").
    public init(json original: [String: Any], file: String, kind override: Kind? = nil) throws {
        func fail(_ field: String, _ problem: String) -> ConfigFileError { ConfigFileError(file: file, field: field, problem: problem) }
        let defaulted = Set(original["_use_default_values"] as? [String] ?? [])
        let json = original.filter { !defaulted.contains($0.key) }
        let className = json["_class_name"] as? String
        guard let kind = override ?? className.flatMap(Kind.init(rawValue:)) ?? (className == nil ? .ddpm : nil) else {
            throw fail("_class_name", "scheduler \"\(className!)\" is not supported by Haze (supported: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.init(kind: kind)
        func value(_ field: String) -> Any? { json[field].flatMap { $0 is NSNull ? nil : $0 } }
        func number(_ field: String) throws -> Double? {
            guard let v = value(field) else { return nil }
            guard let n = v as? NSNumber else { throw fail(field, "expected a number, found \(v)") }
            return n.doubleValue
        }
        func integer(_ field: String) throws -> Int? {
            guard let x = try number(field) else { return nil }
            guard x == x.rounded(), abs(x) < 0x1p53 else { throw fail(field, "expected an integer, found \(x)") }
            return Int(x)
        }
        func flag(_ field: String) throws -> Bool? {
            guard let v = value(field) else { return nil }
            guard let b = v as? Bool else { throw fail(field, "expected true or false, found \(v)") }
            return b
        }
        func text(_ field: String, allowed: [String]) throws -> String? {
            guard let v = value(field) else { return nil }
            guard let s = v as? String else { throw fail(field, "expected a string, found \(v)") }
            guard allowed.contains(s) else {
                throw fail(field, "value \"\(s)\" is not supported by Haze (supported: \(allowed.joined(separator: ", ")))")
            }
            return s
        }
        numTrainTimesteps = try integer("num_train_timesteps") ?? numTrainTimesteps
        guard (2...Self.maximumTrainTimesteps).contains(numTrainTimesteps) else {
            throw fail("num_train_timesteps", "value \(numTrainTimesteps) is not in 2…\(Self.maximumTrainTimesteps)")
        }
        betaStart = try number("beta_start") ?? betaStart
        betaEnd = try number("beta_end") ?? betaEnd
        betaSchedule = try text("beta_schedule", allowed: ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"]) ?? betaSchedule
        if let betas = value("trained_betas") {
            guard let list = betas as? [NSNumber], list.count == numTrainTimesteps else {
                throw fail("trained_betas", "expected \(numTrainTimesteps) numbers")
            }
            trainedBetas = list.map(\.floatValue)
        }
        rescaleBetasZeroSNR = try flag("rescale_betas_zero_snr") ?? false
        predictionType = try text("prediction_type", allowed: PredictionType.allCases.map(\.rawValue)).flatMap(PredictionType.init(rawValue:)) ?? .epsilon
        timestepSpacing = try text("timestep_spacing", allowed: ["leading", "trailing", "linspace"]).flatMap(Spacing.init(rawValue:)) ?? timestepSpacing
        stepsOffset = try integer("steps_offset") ?? 0
        guard (0..<numTrainTimesteps).contains(stepsOffset) else {
            throw fail("steps_offset", "value \(stepsOffset) is not a timestep (0…\(numTrainTimesteps - 1))")
        }
        clipSample = try flag("clip_sample") ?? (kind == .ddpm || kind == .ddim)
        clipSampleRange = try number("clip_sample_range").map(Float.init) ?? 1
        thresholding = try flag("thresholding") ?? false
        dynamicThresholdingRatio = try number("dynamic_thresholding_ratio").map(Float.init) ?? 0.995
        guard (0...1).contains(dynamicThresholdingRatio) else {
            throw fail("dynamic_thresholding_ratio", "value \(dynamicThresholdingRatio) is not a quantile between 0 and 1")
        }
        sampleMaxValue = try number("sample_max_value").map(Float.init) ?? 1
        setAlphaToOne = try flag("set_alpha_to_one") ?? true
        lowerOrderFinal = try flag("lower_order_final") ?? true
        let karras = try flag("use_karras_sigmas") ?? false, exponential = try flag("use_exponential_sigmas") ?? false
        if karras && exponential { throw fail("use_exponential_sigmas", "only one of use_karras_sigmas and use_exponential_sigmas can be true") }
        sigmaSpacing = karras ? .karras : exponential ? .exponential : .schedule
        switch kind {
        case .ddpm:
            varianceType = try text("variance_type", allowed: ["fixed_small", "fixed_large"]) ?? "fixed_small"
        case .dpmSolverMultistep:
            solverOrder = try integer("solver_order") ?? 2
            guard solverOrder == 1 || solverOrder == 2 else { throw fail("solver_order", "value \(solverOrder) is not supported by Haze (1 or 2)") }
            stochastic = try text("algorithm_type", allowed: ["dpmsolver++", "sde-dpmsolver++"]) == "sde-dpmsolver++"
            _ = try text("solver_type", allowed: ["midpoint"])
            _ = try text("final_sigmas_type", allowed: ["zero"])
            if try flag("euler_at_final") == true { throw fail("euler_at_final", "value true is not supported by Haze") }
        case .uniPC:
            solverOrder = try integer("solver_order") ?? 2
            guard (1...3).contains(solverOrder) else { throw fail("solver_order", "value \(solverOrder) is not supported by Haze (1, 2 or 3)") }
            uniPCSolverType = try text("solver_type", allowed: ["bh1", "bh2"]) ?? "bh2"
            _ = try text("final_sigmas_type", allowed: ["zero"])
            if try flag("predict_x0") == false { throw fail("predict_x0", "value false is not supported by Haze") }
            if let disabled = value("disable_corrector") as? [Any], !disabled.isEmpty {
                throw fail("disable_corrector", "a non-empty list is not supported by Haze")
            }
            if value("solver_p") != nil { throw fail("solver_p", "is not supported by Haze") }
        case .euler, .eulerAncestral:
            _ = try text("interpolation_type", allowed: ["linear"])
            _ = try text("final_sigmas_type", allowed: ["zero"])
            if let churn = try number("s_churn"), churn != 0 { throw fail("s_churn", "value \(churn) is not supported by Haze (0)") }
        case .ddim, .heun:
            break
        case .continuousDDIM:
            minSignalRate = try number("min_signal_rate") ?? minSignalRate
            maxSignalRate = try number("max_signal_rate") ?? maxSignalRate
            guard 0 < minSignalRate, minSignalRate < maxSignalRate, maxSignalRate < 1 else {
                throw fail("min_signal_rate", "signal rates must satisfy 0 < min < max < 1")
            }
        }
        for option in ["use_beta_sigmas", "use_flow_sigmas", "use_lu_lambdas", "use_dynamic_shifting"]
        where try flag(option) == true {
            throw fail(option, "value true is not supported by Haze")
        }
        if betaSchedule == "sigmoid" && kind != .ddpm {
            throw fail("beta_schedule", "value \"sigmoid\" is only supported by DDPMScheduler (as in diffusers)")
        }
    }

    /// The config as diffusers writes it.
    public func jsonObject() -> [String: Any] {
        func decimal(_ x: Float) -> Double { Double("\(x)")! }
        var o: [String: Any] = [
            "_class_name": kind.rawValue, "_diffusers_version": "0.42.1",
            "num_train_timesteps": numTrainTimesteps, "beta_start": betaStart, "beta_end": betaEnd,
            "beta_schedule": betaSchedule, "trained_betas": trainedBetas.map { $0.map(decimal) } as Any? ?? NSNull(),
            "prediction_type": predictionType.rawValue, "timestep_spacing": timestepSpacing.rawValue,
            "steps_offset": stepsOffset, "rescale_betas_zero_snr": rescaleBetasZeroSNR,
        ]
        switch kind {
        case .ddpm, .ddim, .heun:
            o["clip_sample"] = clipSample; o["clip_sample_range"] = decimal(clipSampleRange)
            o["thresholding"] = thresholding; o["dynamic_thresholding_ratio"] = decimal(dynamicThresholdingRatio)
            o["sample_max_value"] = decimal(sampleMaxValue)
            if kind == .ddpm { o["variance_type"] = varianceType } else if kind == .ddim { o["set_alpha_to_one"] = setAlphaToOne }
        case .dpmSolverMultistep:
            o["solver_order"] = solverOrder; o["algorithm_type"] = stochastic ? "sde-dpmsolver++" : "dpmsolver++"
            o["solver_type"] = "midpoint"; o["lower_order_final"] = lowerOrderFinal; o["final_sigmas_type"] = "zero"
        case .euler, .eulerAncestral:
            o["interpolation_type"] = "linear"
        case .uniPC:
            o["solver_order"] = solverOrder; o["solver_type"] = uniPCSolverType; o["predict_x0"] = true
            o["lower_order_final"] = lowerOrderFinal; o["disable_corrector"] = [Int](); o["final_sigmas_type"] = "zero"
            o["thresholding"] = thresholding; o["dynamic_thresholding_ratio"] = decimal(dynamicThresholdingRatio)
            o["sample_max_value"] = decimal(sampleMaxValue)
        case .continuousDDIM:
            o["min_signal_rate"] = minSignalRate; o["max_signal_rate"] = maxSignalRate
        }
        if usesSigmas {
            o["use_karras_sigmas"] = sigmaSpacing == .karras; o["use_exponential_sigmas"] = sigmaSpacing == .exponential
        }
        return o
    }

    /// Writes `scheduler_config.json` atomically.
    public func write(to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: jsonObject(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try AtomicFile.write(data, to: path)
    }
}

/// Stored (in a trainer state) as the text of its scheduler_config.json.
extension SchedulerConfig: Codable {
    public func encode(to encoder: Encoder) throws {
        let data = try JSONSerialization.data(withJSONObject: jsonObject(), options: [.sortedKeys, .withoutEscapingSlashes])
        var container = encoder.singleValueContainer()
        try container.encode(String(decoding: data, as: UTF8.self))
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a scheduler config object"))
        }
        try self.init(json: json, file: "(stored scheduler config)")
    }
}

/// A problem in a config file: the file, the field and what is wrong.
public struct ConfigFileError: Error, CustomStringConvertible {
    /// The path of the config file.
    public let file: String
    /// The JSON field at fault, or nil for the file as a whole.
    public let field: String?
    /// What is wrong, for the user.
    public let problem: String
    public var description: String { "\(file): " + (field.map { "field \"\($0)\": " } ?? "") + problem }
}
