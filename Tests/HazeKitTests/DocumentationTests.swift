import Foundation
import XCTest

/// Every public declaration of the library targets has a doc comment (issue 18, API reference).
///
/// The test reads the Swift sources of `libraryTargets` (found from `#filePath`) and, for each
/// declaration that is public — marked `public` or `open`, or a requirement inside a public
/// protocol, or a member of a `public extension` without an access modifier of its own — that
/// declares a `func`, `init`, `var`, `let`, `subscript`, `struct`, `class`, `enum`, `protocol`,
/// `actor`, `typealias` or `associatedtype`, requires a `///` comment (or a `/** … */` block)
/// on the line(s) directly above it. Attribute lines (`@inlinable`, `@discardableResult`) and
/// `#if`/`#else`/`#endif` lines may stand between the comment and the declaration; a
/// declaration in an `#else` branch may share the comment above its `#if`. Comments, string
/// literals and multi-line declarations are handled by a small lexer, not by the compiler.
///
/// Not required: enum cases (they cannot be marked public; the enum's comment is), extension
/// declarations themselves (their public members are), and the witnesses in `witnesses`:
/// a member implementing a requirement of a protocol that documents it — `==`, `<`,
/// `hash(into:)`, `description`, `debugDescription`, `errorDescription`, `init(from:)`,
/// `encode(to:)`, and the requirements of Haze's own protocols (`Module`, `DenoisingModel`,
/// `Scheduler`, `SigmaSpaceScheduler`, `NoiseSource`, `ImageDataset`), whose declarations on the
/// protocol are themselves checked here. A member is exempt only when its enclosing type or
/// extension names that protocol (or one refining it) in its header, or extends the protocol
/// itself (a default implementation), and its full name with argument labels is in the list.
final class DocumentationTests: XCTestCase {
    /// The library targets whose public API must be documented.
    static let libraryTargets = ["HazeTensor", "HazeIO", "HazeNN", "HazeDiffusion", "HazeData", "HazeTraining",
                                 "HazeDistributed", "HazeKit"]

    /// Requirements documented on a protocol, by protocol: full names with argument labels.
    static let witnesses: [String: Set<String>] = [
        "Equatable": ["==(_:_:)"],
        "Hashable": ["hash(into:)", "hashValue"],
        "Comparable": ["<(_:_:)"],
        "CustomStringConvertible": ["description"],
        "CustomDebugStringConvertible": ["debugDescription"],
        "LocalizedError": ["errorDescription", "failureReason", "recoverySuggestion"],
        "Decodable": ["init(from:)"],
        "Encodable": ["encode(to:)"],
        "Module": ["parameterSpecs"],
        "DenoisingModel": ["inChannels", "sampleSize", "sizeMultiple", "isClassConditional", "classTableSize",
                           "callAsFunction(_:timesteps:classLabels:parameters:context:)", "configData()", "summary"],
        "Scheduler": ["config", "schedule", "timesteps", "initNoiseSigma", "setTimesteps(_:)",
                      "scaleModelInput(_:stepIndex:)", "needsNoise(stepIndex:)", "step(modelOutput:stepIndex:sample:noise:)",
                      "order", "addNoise(_:noise:stepIndex:)"],
        "SigmaSpaceScheduler": ["sigmas"],
        "NoiseSource": ["normal(_:)"],
        "ImageDataset": ["count", "imageShape", "classCount", "image(_:into:)", "label(_:)"],
    ]

    /// Protocols that refine others: conforming to the key conforms to the values.
    static let refinements: [String: [String]] = [
        "Hashable": ["Equatable"], "Comparable": ["Equatable"], "Codable": ["Decodable", "Encodable"],
        "LocalizedError": ["Error"], "DenoisingModel": ["Module"], "SigmaSpaceScheduler": ["Scheduler"],
    ]

    func testEveryPublicDeclarationIsDocumented() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var missing: [String] = []
        var fileCount = 0
        for target in Self.libraryTargets {
            let folder = root.appendingPathComponent("Sources/\(target)")
            guard let files = FileManager.default.enumerator(atPath: folder.path) else { continue }
            for case let name as String in files where name.hasSuffix(".swift") {
                let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
                fileCount += 1
                for (line, declaration) in Self.undocumentedDeclarations(in: text) {
                    missing.append("Sources/\(target)/\(name):\(line): \(declaration)")
                }
            }
        }
        XCTAssertGreaterThan(fileCount, 50, "found too few sources under \(root.path)/Sources")
        XCTAssert(missing.isEmpty, "\(missing.count) public declarations lack a /// doc comment:\n"
                  + missing.sorted().joined(separator: "\n"))
    }

    /// The scanner finds what it should in a small source.
    func testScannerOnAnExample() {
        let source = """
            /// Documented.
            public struct A: Equatable, CustomStringConvertible {
                public let x: Int  // not documented
                /// Documented.
                @inlinable
                public init(x: Int,
                            y: Int) { self.x = x + y }
                public var description: String { "{ \\(x) }" }
                public static func == (a: A, b: A) -> Bool { true }
                public func label(_ i: Int) -> Int { i }
                var hidden: Int { 0 }
            }
            /** Documented. */
            public protocol P {
                var count: Int { get }
                /// Documented.
                func f()
            }
            /// Documented.
            #if os(Linux)
            public func g() {}
            #else
            public func g() {}
            #endif
            extension A {
                public func h() { let s = "public func fake()"; _ = s }
            }
            public enum E { case a, b }
            """
        let found = Self.undocumentedDeclarations(in: source)
        XCTAssertEqual(found.map(\.line), [3, 10, 15, 26, 28], "\(found)")
    }

    // MARK: - Scanner

    /// Source lines with comments and the contents of string literals blanked out (same length
    /// and line breaks), so that braces and keywords can be read from code only.
    static func codeOnly(_ text: String) -> [String] {
        let chars = Array(text.unicodeScalars)
        var out = [Character]()
        out.reserveCapacity(chars.count)
        // A stack of contexts: code (counting parentheses, to find the end of an interpolation)
        // or a string (multi-line or not, with its raw `#` count).
        enum Context { case code(parens: Int), string(multiline: Bool, hashes: Int) }
        var stack: [Context] = [.code(parens: 0)]
        var i = 0
        func at(_ k: Int) -> Character? { k < chars.count ? Character(chars[k]) : nil }
        func blank(_ c: Character) { out.append(c == "\n" ? "\n" : " ") }
        while i < chars.count {
            let c = Character(chars[i])
            switch stack[stack.count - 1] {
            case .code(let parens):
                if c == "/" && at(i + 1) == "/" {
                    while i < chars.count && at(i) != "\n" { blank(at(i)!); i += 1 }
                    continue
                }
                if c == "/" && at(i + 1) == "*" {
                    var depth = 0
                    repeat {
                        if at(i) == "/" && at(i + 1) == "*" { depth += 1; blank("/"); blank("*"); i += 2; continue }
                        if at(i) == "*" && at(i + 1) == "/" { depth -= 1; blank("*"); blank("/"); i += 2; continue }
                        blank(at(i)!); i += 1
                    } while depth > 0 && i < chars.count
                    continue
                }
                var hashes = 0
                while at(i + hashes) == "#" { hashes += 1 }
                if at(i + hashes) == "\"" {
                    let multiline = at(i + hashes + 1) == "\"" && at(i + hashes + 2) == "\""
                    let opening = hashes + (multiline ? 3 : 1)
                    for k in 0..<opening { out.append(at(i + k)!) }
                    i += opening
                    stack.append(.string(multiline: multiline, hashes: hashes))
                    continue
                }
                if c == "(" { stack[stack.count - 1] = .code(parens: parens + 1) }
                if c == ")" {
                    if parens == 0 && stack.count > 1 {  // the end of an interpolation
                        stack.removeLast(); blank(c); i += 1; continue
                    }
                    stack[stack.count - 1] = .code(parens: parens - 1)
                }
                out.append(c); i += 1
            case .string(let multiline, let hashes):
                if c == "\\" {
                    var k = 1
                    while k <= hashes && at(i + k) == "#" { k += 1 }
                    if k == hashes + 1 {
                        if at(i + k) == "(" {
                            for _ in 0...k { blank(" ") }
                            i += k + 1
                            stack.append(.code(parens: 0))
                            continue
                        }
                        for _ in 0...k { blank(at(i) == "\n" ? "\n" : " ") }
                        i += k + 1
                        continue
                    }
                }
                let quotes = multiline ? 3 : 1
                if c == "\"" && (0..<quotes).allSatisfy({ at(i + $0) == "\"" })
                    && (0..<hashes).allSatisfy({ at(i + quotes + $0) == "#" }) {
                    for k in 0..<(quotes + hashes) { out.append(at(i + k)!) }
                    i += quotes + hashes
                    stack.removeLast()
                    continue
                }
                blank(c); i += 1
            }
        }
        return String(out).components(separatedBy: "\n")
    }

    /// Modifiers that may precede a declaration keyword.
    static let modifiers: Set<String> = [
        "public", "open", "internal", "fileprivate", "private", "package", "static", "class", "final", "override",
        "mutating", "nonmutating", "convenience", "required", "indirect", "lazy", "nonisolated", "dynamic", "weak",
        "unowned", "prefix", "postfix", "infix", "optional", "consuming", "borrowing",
    ]
    /// Keywords of declarations that need documenting.
    static let documentedKinds: Set<String> = [
        "func", "init", "var", "let", "subscript", "struct", "class", "enum", "protocol", "actor", "typealias",
        "associatedtype",
    ]
    /// Keywords that open a type or extension scope.
    static let scopeKinds: Set<String> = ["struct", "class", "enum", "protocol", "actor", "extension"]

    /// A declaration read from the start of a line: its modifiers, keyword, and the rest.
    struct Declaration {
        var modifiers: [String]
        var keyword: String
        var rest: Substring
    }

    /// Parses `@attributes modifiers keyword rest` at the start of a code line, or nil.
    static func declaration(_ line: String) -> Declaration? {
        var s = line.drop(while: { $0 == " " || $0 == "\t" })
        var mods: [String] = []
        while true {
            if s.hasPrefix("@") {  // an attribute, with its arguments
                s = s.dropFirst().drop(while: { $0.isLetter || $0.isNumber || $0 == "_" })
                if s.hasPrefix("(") {
                    var depth = 0
                    while let c = s.first {
                        s = s.dropFirst()
                        if c == "(" { depth += 1 } else if c == ")" { depth -= 1; if depth == 0 { break } }
                    }
                }
                s = s.drop(while: { $0 == " " })
                continue
            }
            let word = String(s.prefix(while: { $0.isLetter || $0.isNumber || $0 == "_" }))
            if word.isEmpty { return nil }
            var after = s.dropFirst(word.count)
            var argument = ""  // private(set), nonisolated(unsafe)
            if modifiers.contains(word), after.hasPrefix("("), let close = after.firstIndex(of: ")") {
                argument = String(after[...close])
                after = after[after.index(after: close)...]
            }
            if documentedKinds.contains(word) || word == "extension" {
                // `class` is a modifier when another keyword follows (`class func`).
                let next = after.drop(while: { $0 == " " }).prefix(while: { $0.isLetter })
                if word == "class" && (documentedKinds.contains(String(next)) || modifiers.contains(String(next))) {
                    mods.append(word); s = after.drop(while: { $0 == " " }); continue
                }
                if word == "init" || word == "subscript" || after.first == " " || after.isEmpty {
                    return Declaration(modifiers: mods, keyword: word, rest: after)
                }
                return nil
            }
            guard modifiers.contains(word) else { return nil }
            mods.append(word + argument)
            s = after.drop(while: { $0 == " " })
        }
    }

    /// The declared name with argument labels (`step(modelOutput:stepIndex:sample:noise:)`,
    /// `==(_:_:)`, `init(from:)`), or the bare name of a property or type.
    static func fullName(_ d: Declaration) -> String {
        var s = d.rest.drop(while: { $0 == " " })
        var name = d.keyword
        let operatorChars = Set("=<>!+-*/%&|^~?.")
        var isOperator = false
        if d.keyword != "init" && d.keyword != "subscript" {
            isOperator = s.first.map { operatorChars.contains($0) } ?? false
            name = String(s.prefix(while: { isOperator ? operatorChars.contains($0) : ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "`") }))
            s = s.dropFirst(name.count)
            name = name.replacingOccurrences(of: "`", with: "")
        }
        guard d.keyword == "func" || d.keyword == "init" || d.keyword == "subscript" else { return name }
        s = s.drop(while: { $0 == " " || $0 == "?" || $0 == "!" })
        if s.hasPrefix("<") {  // generic parameters
            var depth = 0
            while let c = s.first {
                s = s.dropFirst()
                if c == "<" { depth += 1 } else if c == ">" { depth -= 1; if depth == 0 { break } }
            }
            s = s.drop(while: { $0 == " " })
        }
        guard s.hasPrefix("(") else { return name }
        // Split the parameter clause at top-level commas; a parameter's label is its first word.
        var labels: [String] = [], parameter = "", depth = 0
        for c in s.dropFirst() {
            if "([<".contains(c) { depth += 1 }
            if ")]".contains(c) || (c == ">" && parameter.last != "-") { if depth == 0 { break }; depth -= 1 }
            if c == "," && depth == 0 { labels.append(parameter); parameter = ""; continue }
            parameter.append(c)
        }
        labels.append(parameter)
        let names = labels.compactMap { p -> String? in
            let head = p.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
            return head.split(separator: " ").first.map { $0 + ":" }
        }
        return name + "(" + (d.keyword == "subscript" || isOperator ? names.map { _ in "_:" } : names).joined() + ")"
    }

    /// A type or extension scope: the protocols it names (with the ones they refine) and whether
    /// its members are public without saying so.
    struct Scope {
        var protocols: Set<String>
        var membersArePublic: Bool
        var isType: Bool
    }

    /// Line numbers (1-based) and text of public declarations that have no doc comment.
    static func undocumentedDeclarations(in text: String) -> [(line: Int, declaration: String)] {
        let raw = text.components(separatedBy: "\n")
        let code = codeOnly(text)
        var result: [(Int, String)] = []
        // Scopes by brace: nil for braces that open no type or extension.
        var scopes: [Scope?] = []
        var pending = ""  // code since the last brace, the header of the next scope
        for (index, line) in code.enumerated() {
            let enclosing = scopes.last ?? nil
            if let first = declaration(line), documentedKinds.contains(first.keyword) {
                let text = signature(from: index, code: code)
                let d = declaration(text) ?? first
                let isPublic = d.modifiers.contains("public") || d.modifiers.contains("open")
                    || (enclosing?.membersArePublic == true
                        && !d.modifiers.contains(where: { ["internal", "fileprivate", "private", "package"].contains($0) }))
                let name = fullName(d)
                let exempt = enclosing?.protocols.contains { witnesses[$0]?.contains(name) == true } ?? false
                if isPublic && !exempt && !hasDocComment(above: index, raw: raw, code: code) {
                    result.append((index + 1, text))
                }
            }
            for c in line {
                if c == "{" {
                    scopes.append(scope(header: pending, enclosing: scopes.last ?? nil))
                    pending = ""
                } else if c == "}" {
                    if !scopes.isEmpty { scopes.removeLast() }
                    pending = ""
                } else if c == ";" {
                    pending = ""
                } else {
                    pending.append(c)
                }
            }
            pending.append("\n")
        }
        return result
    }

    /// The scope a `{` opens, from the code before it.
    static func scope(header: String, enclosing: Scope?) -> Scope? {
        // The header is the last line-initial declaration in `header`, continued over lines.
        let lines = header.components(separatedBy: "\n")
        guard let start = lines.lastIndex(where: { declaration($0) != nil }), let d = declaration(lines[start]) else {
            return nil
        }
        guard scopeKinds.contains(d.keyword) else { return nil }
        let text = ([String(d.rest)] + lines[(start + 1)...]).joined(separator: " ")
        // `Name<…>: A, B where …`
        var words = text.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == ":" || $0 == "<" || $0 == ">") })
            .map(String.init)
        let name = words.first.map { String($0.prefix(while: { $0 != ":" && $0 != "<" })) } ?? ""
        if let whereIndex = words.firstIndex(of: "where") { words = Array(words[..<whereIndex]) }
        var protocols: Set<String> = d.keyword == "extension" ? [name] : []
        if let colon = text.firstIndex(of: ":") {
            var inheritance = text[text.index(after: colon)...]
            if let w = inheritance.range(of: " where ") { inheritance = inheritance[..<w.lowerBound] }
            for p in inheritance.split(separator: ",") {
                protocols.insert(p.trimmingCharacters(in: .whitespaces).components(separatedBy: ".").last ?? "")
            }
        }
        var queue = Array(protocols)
        while let p = queue.popLast() {
            for r in refinements[p] ?? [] where !protocols.contains(r) { protocols.insert(r); queue.append(r) }
        }
        let isPublic = d.modifiers.contains("public") || d.modifiers.contains("open")
        return Scope(protocols: protocols, membersArePublic: isPublic && (d.keyword == "protocol" || d.keyword == "extension"),
                     isType: d.keyword != "extension")
    }

    /// Whether a `///` line or a `/** … */` block stands directly above line `index`, past
    /// attribute and `#if` lines; a declaration in an `#else` branch may use the comment above the `#if`.
    static func hasDocComment(above index: Int, raw: [String], code: [String]) -> Bool {
        var k = index - 1
        while k >= 0 {
            let line = raw[k].trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("///") { return true }
            if line.hasSuffix("*/") {
                var j = k
                while j >= 0 && !raw[j].contains("/*") { j -= 1 }
                return j >= 0 && raw[j].trimmingCharacters(in: .whitespaces).hasPrefix("/**")
            }
            if line.hasPrefix("@") && code[k].trimmingCharacters(in: .whitespaces).hasPrefix("@") { k -= 1; continue }
            if line.hasPrefix("#if") || line.hasPrefix("#endif") { k -= 1; continue }
            if line.hasPrefix("#else") || line.hasPrefix("#elseif") {  // skip back to the matching #if
                var depth = 0
                k -= 1
                while k >= 0 {
                    let l = raw[k].trimmingCharacters(in: .whitespaces)
                    if l.hasPrefix("#endif") { depth += 1 } else if l.hasPrefix("#if") {
                        if depth == 0 { break }
                        depth -= 1
                    }
                    k -= 1
                }
                k -= 1
                continue
            }
            return false
        }
        return false
    }

    /// The declaration starting at line `index`, over its lines up to its body or end.
    static func signature(from index: Int, code: [String]) -> String {
        var text = "", depth = 0
        for line in code[index..<min(index + 12, code.count)] {
            for c in line {
                if c == "{" && depth == 0 { return text.trimmingCharacters(in: .whitespaces) }
                if c == "(" || c == "[" { depth += 1 }
                if c == ")" || c == "]" { depth -= 1 }
                text.append(c)
            }
            if depth <= 0 && !text.hasSuffix(",") && !text.hasSuffix("->") { break }
            text += " "
        }
        return text.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
    }
}
