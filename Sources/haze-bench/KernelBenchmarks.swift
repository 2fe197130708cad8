import ArgumentParser
import CHazeKernels
import Foundation
import HazeTensor

/// One op at one shape: its forward, and forward + backward through the tape.
struct KernelCase {
    let name: String
    /// Floating-point operations of the forward (GEMM-like ops), or 0 when it is memory-bound.
    let forwardFlops: Double
    /// Bytes moved by the forward (for memory-bound ops), or 0.
    let forwardBytes: Double
    let inputs: [Tensor]
    let op: ([Tensor]) -> Tensor
}

/// The ops of the reference model fmnist-s (28×28×1, channels 32/64/128, GroupNorm 8 groups,
/// attention with 16 heads of width 8 over 7×7 = 49 tokens), at batch 64.
func fmnistKernelCases(batch n: Int) -> [KernelCase] {
    var cases: [KernelCase] = []
    func conv(_ c: Int, _ o: Int, _ hw: Int, k: Int = 3, stride: Int = 1, images: Int? = nil) {
        let n = images ?? n
        let x = Tensor.normal([n, c, hw, hw], seed: 1), w = Tensor.normal([o, c, k, k], std: 0.05, seed: 2)
        let b = Tensor.zeros([o])
        let out = (hw + 2 * (k / 2) - k) / stride + 1
        cases.append(KernelCase(
            name: "conv2d \(k)x\(k)\(stride > 1 ? " s\(stride)" : "") [\(n),\(c),\(hw),\(hw)]->\(o)",
            forwardFlops: 2 * Double(n * o * out * out * c * k * k), forwardBytes: 0, inputs: [x, w, b]) {
                Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], stride: stride, padding: k / 2)
            })
    }
    conv(32, 32, 28)
    conv(64, 64, 28)
    conv(64, 64, 14)
    conv(32, 32, 28, stride: 2)
    conv(64, 64, 14, stride: 2)
    conv(128, 128, 7)
    conv(256, 128, 7)
    conv(96, 32, 28, k: 1)
    conv(128, 384, 7, k: 1)  // attention's q, k, v at fmnist-s's 7×7 level
    // The 64×64 scale of the TensorFlow article's network and faces-64, a quarter of the batch.
    conv(32, 32, 64, images: n / 4)
    conv(96, 32, 64, images: n / 4)
    conv(64, 64, 32, images: n / 4)
    conv(128, 128, 32, images: n / 4)
    conv(128, 128, 16, images: n / 4)
    for (c, hw) in [(32, 28), (128, 7)] {
        let x = Tensor.normal([n, c, hw, hw], seed: 3)
        cases.append(KernelCase(name: "group norm [\(n),\(c),\(hw),\(hw)] g8", forwardFlops: 0,
                                forwardBytes: 8 * Double(x.count), inputs: [x, Tensor.ones([c]), Tensor.zeros([c])]) {
            Tensor.groupNorm($0[0], groups: 8, weight: $0[1], bias: $0[2])
        })
    }
    // A block's group norm + SiLU + 3×3 convolution, read through the norm by F(4×4)'s input
    // transforms (`conv2d(siluOfGroupNorm:)`), and with the activations written out first (no
    // PyTorch counterpart; the two side by side are the fusion's gain).
    for (c, hw) in [(64, 28), (128, 14), (128, 7)] {
        let x = Tensor.normal([n, c, hw, hw], seed: 12), w = Tensor.normal([c, c, 3, 3], std: 0.05, seed: 13)
        let inputs = [x, Tensor.ones([c]), Tensor.zeros([c]), w, Tensor.zeros([c])], flops = 2 * Double(n * c * hw * hw * c * 9)
        cases.append(KernelCase(name: "norm+silu+conv2d 3x3 [\(n),\(c),\(hw),\(hw)]->\(c)", forwardFlops: flops, forwardBytes: 0,
                                inputs: inputs) {
            Tensor.conv2d(siluOfGroupNorm: $0[0], groups: 8, scale: $0[1], shift: $0[2], weight: $0[3], bias: $0[4], padding: Padding2D(1))
        })
        cases.append(KernelCase(name: "norm+silu, conv2d 3x3 [\(n),\(c),\(hw),\(hw)]->\(c)", forwardFlops: flops, forwardBytes: 0,
                                inputs: inputs) {
            Tensor.conv2d(Tensor.groupNorm($0[0], groups: 8, weight: $0[1], bias: $0[2], applyingSiLU: true), weight: $0[3], bias: $0[4],
                          padding: 1)
        })
    }
    // An up block's first resnet reads its state ⧺ skip three times: the norm, the 3×3 convolution
    // through it and the 1×1 shortcut. Read in place in inference (`Tensor.conv2d(…concatenatedWith:)`;
    // with the tape, as here in forward + backward, they concatenate), and copied first.
    for (c1, c2, o, hw) in [(64, 32, 32, 28), (128, 64, 64, 14)] {
        let (c, flops) = (c1 + c2, 2 * Double(n * o * hw * hw * (c1 + c2) * 10))
        let inputs = [Tensor.normal([n, c1, hw, hw], seed: 14), Tensor.normal([n, c2, hw, hw], seed: 15), Tensor.ones([c]),
                      Tensor.zeros([c]), Tensor.normal([o, c, 3, 3], std: 0.05, seed: 16), Tensor.normal([o, c, 1, 1], std: 0.1, seed: 17)]
        for inPlace in [true, false] {
            cases.append(KernelCase(name: "up-block input \(inPlace ? "in place" : "copied") [\(n),\(c1)+\(c2),\(hw),\(hw)]->\(o)",
                                    forwardFlops: flops, forwardBytes: 0, inputs: inputs) { t in
                let (x, skip) = inPlace ? (t[0], t[1]) : (Tensor.concatenate([t[0], t[1]], alongAxis: 1), nil)
                let shortcut = skip.map { Tensor.conv2d(x, concatenatedWith: $0, weight: t[5]) } ?? Tensor.conv2d(x, weight: t[5])
                let normalized = skip.map {
                    Tensor.conv2d(siluOfGroupNorm: x, concatenatedWith: $0, groups: 8, scale: t[2], shift: t[3], weight: t[4], padding: Padding2D(1))
                } ?? Tensor.conv2d(siluOfGroupNorm: x, groups: 8, scale: t[2], shift: t[3], weight: t[4], padding: Padding2D(1))
                return normalized + shortcut
            })
        }
    }
    let x = Tensor.normal([n, 64, 28, 28], seed: 4)
    cases.append(KernelCase(name: "silu [\(n),64,28,28]", forwardFlops: 0, forwardBytes: 8 * Double(x.count),
                            inputs: [x]) { $0[0].silu() })
    cases.append(KernelCase(name: "add [\(n),64,28,28]", forwardFlops: 0, forwardBytes: 12 * Double(x.count),
                            inputs: [x, x]) { $0[0] + $0[1] })
    let qkv = (0..<3).map { Tensor.normal([n, 16, 49, 8], seed: 5 + UInt64($0)) }
    cases.append(KernelCase(name: "attention [\(n),16 heads,49,8]", forwardFlops: 4 * Double(n * 16 * 49 * 49 * 8),
                            forwardBytes: 0, inputs: qkv) {
        Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2])
    })
    // The same attention as the U-Net computes it: q, k, v stacked channels-first (no PyTorch counterpart).
    cases.append(KernelCase(name: "attention channels-first [\(n),384,49]", forwardFlops: 4 * Double(n * 16 * 49 * 49 * 8),
                            forwardBytes: 0, inputs: [Tensor.normal([n, 384, 49], seed: 11)]) {
        Tensor.selfAttention(channelsFirst: $0[0], heads: 16)
    })
    let tokens = Tensor.normal([n * 49, 128], seed: 8)
    cases.append(KernelCase(name: "linear [\(n * 49),128]->384", forwardFlops: 2 * Double(n * 49 * 128 * 384), forwardBytes: 0,
                            inputs: [tokens, Tensor.normal([384, 128], std: 0.05, seed: 9), Tensor.zeros([384])]) {
        Tensor.linear($0[0], weight: $0[1], bias: $0[2])
    })
    let scores = Tensor.normal([n * 16, 49, 49], seed: 10)
    cases.append(KernelCase(name: "softmax [\(n * 16),49,49]", forwardFlops: 0, forwardBytes: 8 * Double(scores.count),
                            inputs: [scores]) { $0[0].softmax() })
    return cases
}

struct Timing: Codable {
    var medianMs: Double
    var minMs: Double
}

/// 3 warm-up calls, then the median and minimum of 10 timed calls (the PyTorch reference's protocol).
func measure(warmup: Int = 3, iterations: Int = 10, _ body: () -> Void) -> Timing {
    precondition(iterations >= 2, "at least 2 timed iterations")
    for _ in 0..<warmup { body() }
    var samples: [Double] = []
    for _ in 0..<iterations {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
    samples.sort()
    return Timing(medianMs: (samples[iterations / 2 - 1] + samples[iterations / 2]) / 2, minMs: samples[0])
}

struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time each op at the fmnist-s shapes (forward, forward+backward, rates), then SGEMM and the packed kernels against one core's multiply-add ceiling.")

    @Option(help: "Batch size of the activations.") var batch = 64
    @Option(help: "Haze worker threads (BLAS runs single-threaded inside them).") var threads = 2
    @Option(help: "Only cases whose name contains this text.") var filter: String?
    @Option(help: "Timed calls per measurement (after 3 warm-up calls); more for profiling.") var iterations = 10
    @Option(help: "Convolution algorithm: automatic (Winograd for 3×3 stride-1 padding-1) or im2col.") var conv: ConvolutionChoice = .automatic
    @Option(help: "JSON from scripts/bench_torch_kernels.py (same shapes): adds PyTorch times and ratios.")
    var compare: String?
    @Flag(help: "Time single calls on request for scripts/compare_kernels.py: read `forward NAME` or `both NAME` per line, answer the milliseconds.")
    var serve = false

    func run() throws {
        retainFreedMemory()
        Parallel.threadCount = threads
        ConvolutionAlgorithm.current = conv.algorithm
        if serve { return serveSingleCalls() }
        let env = ProcessInfo.processInfo.environment
        print("Kernels: \(CPUFeatures.current.kernelDescription)")
        print("BLAS: \(blasDescription); OPENBLAS_CORETYPE=\(env["OPENBLAS_CORETYPE"] ?? "(unset)") OPENBLAS_L2_SIZE=\(env["OPENBLAS_L2_SIZE"] ?? "(unset)"); Haze threads: \(threads)")
        var torch: [String: [String: Double]] = [:]
        if let compare {
            let data = try Data(contentsOf: URL(fileURLWithPath: compare))
            torch = (try JSONSerialization.jsonObject(with: data) as? [String: [String: Double]]) ?? [:]
        }
        let cases = fmnistKernelCases(batch: batch).filter { c in filter.map { c.name.contains($0) } ?? true }
        let width = max(36, cases.map(\.name.count).max() ?? 0)
        let header = "op".padding(toLength: width, withPad: " ", startingAt: 0)
            + "  fwd ms  fwd+bwd ms   fwd rate" + (torch.isEmpty ? "" : "   torch fwd  torch f+b  ratio f+b (haze/torch)")
        print(header)
        var haze: [String: [String: Double]] = [:]
        for c in cases {
            let forward = measure(iterations: iterations) { _ = c.op(c.inputs) }
            let seed = c.op(c.inputs)
            let both = measure(iterations: iterations) { _ = valueWithGradient(at: c.inputs, seed: seed.detached, of: c.op) }
            let rate = c.forwardFlops > 0
                ? String(format: "%6.1f GFLOP/s", c.forwardFlops / forward.medianMs / 1e6)
                : String(format: "%6.1f GB/s", c.forwardBytes / forward.medianMs / 1e6)
            var line = c.name.padding(toLength: width, withPad: " ", startingAt: 0)
                + String(format: "%8.2f %11.2f  ", forward.medianMs, both.medianMs) + rate
            if let t = torch[c.name], let tf = t["forward_ms"], let tb = t["forward_backward_ms"] {
                line += String(format: "  %9.2f  %9.2f  %6.2fx", tf, tb, both.medianMs / tb)
            }
            print(line)
            haze[c.name] = ["forward_ms": forward.medianMs, "forward_backward_ms": both.medianMs]
        }
        guard filter == nil || "sgemm".contains(filter!) else { return }
        sgemmRates()
        packedRates()
    }

    /// Haze's packed kernels (the Winograd products, haze_gemm.c and haze_gemm_bf16.c) and one
    /// single-threaded SGEMM at product shapes, on one core, as fractions of that core's
    /// multiply-add ceiling (haze_fma_ceiling_*: FMAs from registers only, no loads).
    func packedRates() {
        func ceiling(_ rounds: (Int) -> Double) -> Double {
            let flops = rounds(1 << 22)
            return flops > 0 ? flops / measure(warmup: 1, iterations: 5) { _ = rounds(1 << 22) }.minMs / 1e6 : 0
        }
        let f32 = ceiling { haze_fma_ceiling_f32($0) }, bf16 = ceiling { haze_fma_ceiling_bf16($0) }
        guard f32 > 0 else { return print("\nPacked kernels: this CPU has no AVX-512") }
        print(String(format: "\nOne core's multiply-add ceiling: float32 FMA %.1f GFLOP/s", f32)
              + (bf16 > 0 ? String(format: ", bf16 VDPBF16PS %.1f GFLOP/s", bf16) : " (no AVX512_BF16)"))
        print("C[M,N] = A[M,K] B[K,N] on one core, A packed once (minimum of 5 calls, % of the ceiling):")
        for (m, k, n) in [(128, 128, 1024), (256, 256, 512), (64, 64, 4096), (512, 512, 64), (384, 64, 4096)] {
            let a = Tensor.normal([m, k], seed: 11), b = Tensor.normal([k, n], seed: 12)
            var c = [Float](repeating: 0, count: m * n)
            let flops = 2 * Double(m * n * k)
            var packed = [Float](repeating: 0, count: haze_gemm_packed_size(m, k))
            a.withScalars { haze_gemm_pack($0, k, &packed, m, k) }
            let single = flops / measure { _ = Tensor.singleThreadedMatmul(a, b) }.minMs / 1e6
            let float32 = b.withScalars { pb in
                flops / measure { haze_gemm_packed(packed, pb, n, &c, n, m, n, k, 0) }.minMs / 1e6
            }
            var line = String(format: "  M=%-4d K=%-4d N=%-5d SGEMM %6.1f GFLOP/s (%3.0f %%)  packed float32 %6.1f (%3.0f %%)",
                              m, k, n, single, 100 * single / f32, float32, 100 * float32 / f32)
            if bf16 > 0 {
                var pairs = [UInt32](repeating: 0, count: haze_gemm_packed_bf16_size(m, k))
                haze_gemm_pack_bf16(packed, &pairs, m, k)
                let rate = b.withScalars { pb in flops / measure { haze_gemm_packed_bf16(pairs, pb, n, &c, n, m, n, k, 0) }.minMs / 1e6 }
                line += String(format: "  packed bf16 %6.1f (%3.0f %%)", rate, 100 * rate / bf16)
            }
            print(line)
        }
    }

    /// The SGEMM rates at the convolutions' GEMM shapes.
    func sgemmRates() {
        print("\nSGEMM C[M,N] = A[M,K] B[K,N] at the conv GEMM shapes: one call split over the workers;")
        print("one single-threaded call; and one single-threaded call on every worker at once (aggregate rate)")
        for (m, n, k) in [(64, 784, 576), (64, 1568, 576), (128, 1568, 1152), (32, 784, 288), (2048, 2048, 2048)] {
            let a = Tensor.normal([m, k], seed: 11), b = Tensor.normal([k, n], seed: 12)
            let flops = 2 * Double(m * n * k)
            let split = measure { _ = a.matmul(b) }
            let single = measure { _ = Tensor.singleThreadedMatmul(a, b) }
            let concurrent = measure {
                DispatchQueue.concurrentPerform(iterations: threads) { _ in _ = Tensor.singleThreadedMatmul(a, b) }
            }
            print(String(format: "  M=%-5d N=%-5d K=%-5d split %7.1f GFLOP/s   single %7.1f GFLOP/s   %d concurrent %7.1f GFLOP/s",
                         m, n, k, flops / split.medianMs / 1e6, flops / single.medianMs / 1e6,
                         threads, Double(threads) * flops / concurrent.medianMs / 1e6))
        }
    }

    /// One timed call per request line, so that a driver can alternate Haze's calls with PyTorch's call by call
    /// and both sides see the same state of the machine. Answers `ready` first, then one line per request: the
    /// call's milliseconds, or `error …` for an unknown case.
    func serveSingleCalls() {
        let cases = Dictionary(fmnistKernelCases(batch: batch).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var seeds: [String: Tensor] = [:]
        print("ready")
        fflush(stdout)
        while let line = readLine() {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2, let c = cases[parts[1]], parts[0] == "forward" || parts[0] == "both" else {
                print("error: expected `forward NAME` or `both NAME` with a case of `haze-bench kernels`, got `\(line)`")
                fflush(stdout)
                continue
            }
            let start = DispatchTime.now().uptimeNanoseconds
            if parts[0] == "forward" {
                _ = c.op(c.inputs)
            } else {
                let seed = seeds[c.name] ?? c.op(c.inputs).detached
                seeds[c.name] = seed
                _ = valueWithGradient(at: c.inputs, seed: seed, of: c.op)
            }
            print(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            fflush(stdout)
        }
    }
}
