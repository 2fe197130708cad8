import Foundation
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor

/// The state of a run besides the weights: where it is and how it was configured.
public struct TrainerState: Codable, Equatable, Sendable {
    /// Optimizer steps completed.
    public var step: Int
    /// Where the data loader continues.
    public var data: DataPositionState
    /// The run's settings.
    public var options: TrainingOptions
    /// Updates the EMA has taken (its decay depends on it).
    public var emaUpdates: Int
    /// Random numbers of step s come from a generator keyed by (seed, s): this records it.
    public var randomStream: String
    /// `dataFingerprint` of the training data (nil in checkpoints made before it was recorded).
    public var dataFingerprint: String? = nil

    /// A `DataLoader.Position`, as stored in trainer_state.json.
    public struct DataPositionState: Codable, Equatable, Sendable {
        /// Epochs completed.
        public var epoch: Int
        /// Position within the epoch's permutation of the data.
        public var index: Int
    }
}

extension TrainerState {
    private enum CodingKeys: String, CodingKey { case step, data, options, emaUpdates, randomStream, dataFingerprint }

    /// Decodes and validates: a resumed run relies on these values (counts, positions, the noise
    /// schedule's size), so a damaged trainer_state.json is a `DecodingError` naming the field
    /// and the problem, never a crash or a huge allocation later.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        data = try c.decode(DataPositionState.self, forKey: .data)
        options = try c.decode(TrainingOptions.self, forKey: .options)
        emaUpdates = try c.decode(Int.self, forKey: .emaUpdates)
        randomStream = try c.decode(String.self, forKey: .randomStream)
        dataFingerprint = try c.decodeIfPresent(String.self, forKey: .dataFingerprint)
        let problems: [(path: String, problem: String?)] = [
            ("step", step >= 0 ? nil : "\(step) is negative"),
            ("emaUpdates", emaUpdates >= 0 ? nil : "\(emaUpdates) is negative"),
            ("data", data.epoch >= 0 && data.index >= 0 ? nil : "position (epoch \(data.epoch), index \(data.index)) is negative"),
        ] + options.problems.map { ("options.\($0.field)", $0.problem) }
        if let bad = problems.first(where: { $0.problem != nil }) {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "\(bad.path): \(bad.problem!)"))
        }
    }
}

extension TrainingOptions {
    /// Values a run cannot proceed with, by field (what `haze train` refuses on its command line,
    /// and a noise schedule Haze can build).
    var problems: [(field: String, problem: String)] {
        var found: [(String, String)] = []
        for (field, value) in [("steps", steps), ("batchSize", batchSize), ("gradientAccumulation", gradientAccumulation),
                               ("checkpointEvery", checkpointEvery), ("logEvery", logEvery), ("imageSize", imageSize ?? 1)] where value < 1 {
            found.append((field, "\(value) is not at least 1"))
        }
        if !(2...SchedulerConfig.maximumTrainTimesteps).contains(trainTimesteps) {
            found.append(("trainTimesteps", "\(trainTimesteps) is not in 2…\(SchedulerConfig.maximumTrainTimesteps)"))
        }
        if !Self.betaSchedules.contains(betaSchedule) {
            found.append(("betaSchedule", "\"\(betaSchedule)\" is not one of \(Self.betaSchedules.joined(separator: ", "))"))
        }
        return found
    }
}

/// A checkpoint folder: `model/` and `ema/` (diffusers folders with scheduler_config.json),
/// `optimizer.safetensors` and `trainer_state.json`. Written into a temporary folder (each
/// file fsynced) that is renamed into place, then `RUN/latest` names it: a crash leaves the
/// previous checkpoint intact.
public enum Checkpoint {
    /// A run folder or checkpoint that cannot be written or read: the path and what is wrong.
    public struct Error: Swift.Error, CustomStringConvertible {
        /// The run, checkpoint or file concerned.
        public let path: String
        /// What is wrong, for the user.
        public let problem: String
        public var description: String { "\(path): \(problem)" }
    }

    static func name(step: Int) -> String { String(format: "step-%07d", step) }

    /// Writes checkpoint `RUN/checkpoints/step-NNNNNNN` (model, EMA weights when given, optimizer
    /// state and `state`) atomically, points `RUN/latest` at it and removes all but the last `keep`
    /// checkpoints (at least 1). Throws when a file cannot be written.
    public static func write(run: String, step: Int, model: any DenoisingModel, parameters: ParameterSet, ema: ParameterSet?,
                             optimizer: AdamOptimizer, state: TrainerState, keep: Int) throws {
        let fm = FileManager.default
        let folder = "\(run)/checkpoints"
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let final = "\(folder)/\(name(step: step))", temporary = "\(folder)/.tmp-\(name(step: step))"
        try? fm.removeItem(atPath: temporary)
        do {
            try writeContents(of: temporary, model: model, parameters: parameters, ema: ema, optimizer: optimizer, state: state)
        } catch {
            // A full disk, say: nothing half-written stays, and `latest` still names the previous one.
            try? fm.removeItem(atPath: temporary)
            throw Error(path: final, problem: "checkpoint not written (\(error)); the previous checkpoint is intact")
        }
        try? fm.removeItem(atPath: final)
        try fm.moveItem(atPath: temporary, toPath: final)
        try AtomicFile.write(Data("checkpoints/\(name(step: step))\n".utf8), to: "\(run)/latest")
        // Keep the last `keep` checkpoints.
        let all = (try fm.contentsOfDirectory(atPath: folder)).filter { $0.hasPrefix("step-") }.sorted()
        for old in all.dropLast(max(keep, 1)) { try? fm.removeItem(atPath: "\(folder)/\(old)") }
    }

    /// The files of a checkpoint, each written atomically, into a new folder.
    static func writeContents(of temporary: String, model: any DenoisingModel, parameters: ParameterSet, ema: ParameterSet?,
                              optimizer: AdamOptimizer, state: TrainerState) throws {
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        try ModelFolder.save(model, parameters: parameters, to: temporary + "/model")
        try state.options.schedulerConfig.write(to: temporary + "/model/scheduler_config.json")
        if let ema {
            try ModelFolder.save(model, parameters: ema, to: temporary + "/ema")
            try state.options.schedulerConfig.write(to: temporary + "/ema/scheduler_config.json")
        }
        try optimizer.state.write(to: temporary + "/optimizer.safetensors")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(state), to: temporary + "/trainer_state.json")
    }

    /// The latest checkpoint folder of a run: the one `RUN/latest` names, or, if a crash left that
    /// one missing or `latest` unwritten (between moving a checkpoint into place and naming it),
    /// the newest complete one.
    public static func latest(run: String) throws -> String {
        let fm = FileManager.default
        let named = (try? String(contentsOfFile: "\(run)/latest", encoding: .utf8)).map { "\(run)/" + $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        if let named, fm.fileExists(atPath: named + "/trainer_state.json") { return named }
        let complete = ((try? fm.contentsOfDirectory(atPath: run + "/checkpoints")) ?? [])
            .filter { $0.hasPrefix("step-") && fm.fileExists(atPath: "\(run)/checkpoints/\($0)/trainer_state.json") }.sorted()
        guard let newest = complete.last else {
            throw Error(path: named ?? run, problem: named == nil ? "no checkpoint to resume from (no 'latest' file)"
                                                                  : "checkpoint named by \(run)/latest is missing or incomplete, and no other checkpoint is complete")
        }
        return "\(run)/checkpoints/\(newest)"
    }

    /// Loads a checkpoint for resuming.
    public static func read(_ path: String) throws -> (model: any DenoisingModel, parameters: ParameterSet, ema: ParameterSet?,
                                                       optimizer: AdamOptimizer, state: TrainerState) {
        let (model, parameters) = try ModelFolder.loadModel(path + "/model")
        let ema = FileManager.default.fileExists(atPath: path + "/ema") ? try ModelFolder.loadModel(path + "/ema").parameters : nil
        let optimizerPath = path + "/optimizer.safetensors"
        let optimizer = try AdamOptimizer(state: try SafeTensors.read(contentsOf: optimizerPath), file: optimizerPath)
        try optimizer.checkMoments(against: parameters.mapValues(\.shape), file: optimizerPath)
        return (model, parameters, ema, optimizer, try readState(path))
    }

    /// The trainer state of a checkpoint (`trainer_state.json`) alone: its step and options.
    public static func readState(_ path: String) throws -> TrainerState {
        let statePath = path + "/trainer_state.json"
        do {
            return try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: URL(fileURLWithPath: statePath)))
        } catch {
            throw Error(path: statePath, problem: "unreadable trainer state (\(error))")
        }
    }
}
