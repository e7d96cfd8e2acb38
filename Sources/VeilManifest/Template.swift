import FoundationEssentials
import VeilAttestation

/// A value template: literal text with `{{ FILTER .REFERENCE }}` substitutions.
///
/// Filters: `pem`, `raw`, `hex`, `base64`. References:
/// - `.Secrets.NAME` (plain and symmetric-key secrets: their bytes),
/// - `.Secrets.NAME.Cert`, `.Secrets.NAME.Private`, `.Secrets.NAME.Public` (certificate secrets),
/// - `.Veil.RootCA.Cert`, `.Veil.IntermediateCA.Cert`: the coordinator's CA certificates,
/// - `.Veil.Service.Cert`: the certificate issued to this activation,
/// - `.Veil.Service.Private`: the activation's own private key. It never leaves the launcher,
///   so the coordinator leaves it as a ``RenderedValue/Piece/servicePrivateKey(_:)`` piece and
///   the launcher fills it in.
public struct Template: Sendable, Equatable {
    public enum Filter: String, Sendable, CaseIterable { case pem, raw, hex, base64 }

    public enum SecretPart: String, Sendable { case cert = "Cert", privateKey = "Private", publicKey = "Public" }

    public enum Reference: Sendable, Equatable, CustomStringConvertible {
        case secret(String, SecretPart?)
        case rootCACert
        case intermediateCACert
        case serviceCert
        case servicePrivateKey

        public var description: String {
            switch self {
            case .secret(let name, let part): return ".Secrets.\(name)" + (part.map { ".\($0.rawValue)" } ?? "")
            case .rootCACert: return ".Veil.RootCA.Cert"
            case .intermediateCACert: return ".Veil.IntermediateCA.Cert"
            case .serviceCert: return ".Veil.Service.Cert"
            case .servicePrivateKey: return ".Veil.Service.Private"
            }
        }
    }

    public enum Segment: Sendable, Equatable {
        case literal(String)
        case substitution(Filter, Reference)
    }

    public let source: String
    public let segments: [Segment]

    /// Every reference the template makes.
    public var references: [(filter: Filter, reference: Reference)] {
        segments.compactMap {
            if case .substitution(let filter, let reference) = $0 { return (filter, reference) }
            return nil
        }
    }

    /// Parses `source`; throws a message that says what is wrong and where.
    public init(_ source: String) throws(TemplateSyntaxError) {
        self.source = source
        var segments: [Segment] = []
        var rest = Substring(source)
        while let open = rest.firstRange(of: "{{") {
            if open.lowerBound > rest.startIndex { segments.append(.literal(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].firstRange(of: "}}") else {
                throw TemplateSyntaxError(message: "unterminated '{{' (missing '}}')")
            }
            let directive = rest[open.upperBound..<close.lowerBound].split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard directive.count == 2 else {
                throw TemplateSyntaxError(message: "'{{\(rest[open.upperBound..<close.lowerBound])}}' must be '{{ FILTER .REFERENCE }}'")
            }
            guard let filter = Filter(rawValue: String(directive[0])) else {
                throw TemplateSyntaxError(message: "unknown filter '\(directive[0])' (use pem, raw, hex or base64)")
            }
            segments.append(.substitution(filter, try Self.reference(String(directive[1]))))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { segments.append(.literal(String(rest))) }
        self.segments = segments
    }

    private static func reference(_ text: String) throws(TemplateSyntaxError) -> Reference {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 3, parts[0].isEmpty else {
            throw TemplateSyntaxError(message: "reference '\(text)' must start with '.Secrets.' or '.Veil.'")
        }
        switch parts[1] {
        case "Secrets":
            guard !parts[2].isEmpty else { throw TemplateSyntaxError(message: "reference '\(text)' names no secret") }
            if parts.count == 3 { return .secret(parts[2], nil) }
            guard parts.count == 4, let part = SecretPart(rawValue: parts[3]) else {
                throw TemplateSyntaxError(message: "reference '\(text)': a secret's part is .Cert, .Private or .Public")
            }
            return .secret(parts[2], part)
        case "Veil":
            switch parts[2...].joined(separator: ".") {
            case "RootCA.Cert": return .rootCACert
            case "IntermediateCA.Cert": return .intermediateCACert
            case "Service.Cert": return .serviceCert
            case "Service.Private": return .servicePrivateKey
            default:
                throw TemplateSyntaxError(
                    message: "unknown reference '\(text)' (known: .Veil.RootCA.Cert, .Veil.IntermediateCA.Cert, .Veil.Service.Cert, .Veil.Service.Private)")
            }
        default:
            throw TemplateSyntaxError(message: "reference '\(text)' must start with '.Secrets.' or '.Veil.'")
        }
    }
}

public struct TemplateSyntaxError: Error, Equatable, Sendable {
    public let message: String
}

/// What a reference resolves to.
public enum ReferenceValue: Sendable {
    /// Opaque bytes (plain secrets, symmetric keys). `pem` does not apply.
    case bytes([UInt8])
    /// DER bytes with the PEM label they are written under (`CERTIFICATE`, `PRIVATE KEY`, `PUBLIC KEY`).
    case der([UInt8], pemLabel: String)

    public func apply(_ filter: Template.Filter) -> [UInt8]? {
        switch (filter, self) {
        case (.pem, .bytes): return nil
        case (.pem, .der(let der, let label)): return Array(PEM.encode(der, label: label).utf8)
        case (.raw, .bytes(let bytes)), (.raw, .der(let bytes, _)): return bytes
        case (.hex, .bytes(let bytes)), (.hex, .der(let bytes, _)): return Array(Hex.encode(bytes).utf8)
        case (.base64, .bytes(let bytes)), (.base64, .der(let bytes, _)): return Array(Data(bytes).base64EncodedString().utf8)
        }
    }
}

/// PEM text encoding (RFC 7468), 64-column base64.
public enum PEM {
    public static func encode(_ der: [UInt8], label: String) -> String {
        let base64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN \(label)-----\n\(base64)\n-----END \(label)-----\n"
    }
}

/// A template rendered by the coordinator: bytes, except where the launcher's own private key goes.
public struct RenderedValue: Codable, Sendable, Equatable {
    public enum Piece: Sendable, Equatable {
        case bytes([UInt8])
        /// The activation's private key in the given filter, filled in by the launcher.
        case servicePrivateKey(Template.Filter)
    }

    public var pieces: [Piece]

    public init(pieces: [Piece]) {
        self.pieces = pieces
    }

    /// Fills in the service private key (PKCS#8 DER) and returns the final bytes.
    public func assemble(servicePrivateKeyDER: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for piece in pieces {
            switch piece {
            case .bytes(let bytes): out += bytes
            case .servicePrivateKey(let filter):
                // `.der` takes every filter, so this cannot be nil.
                out += ReferenceValue.der(servicePrivateKeyDER, pemLabel: "PRIVATE KEY").apply(filter) ?? []
            }
        }
        return out
    }

    private struct WirePiece: Codable {
        var data: String?
        var servicePrivateKey: String?
    }

    public init(from decoder: any Decoder) throws {
        let wire = try decoder.singleValueContainer().decode([WirePiece].self)
        pieces = try wire.map { piece in
            if let data = piece.data, piece.servicePrivateKey == nil, let bytes = Data(base64Encoded: data) {
                return .bytes(Array(bytes))
            }
            if piece.data == nil, let name = piece.servicePrivateKey, let filter = Template.Filter(rawValue: name) {
                return .servicePrivateKey(filter)
            }
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad rendered piece"))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(pieces.map { piece -> WirePiece in
            switch piece {
            case .bytes(let bytes): return WirePiece(data: Data(bytes).base64EncodedString())
            case .servicePrivateKey(let filter): return WirePiece(servicePrivateKey: filter.rawValue)
            }
        })
    }
}

extension Template {
    /// Renders with `resolve`; `.Veil.Service.Private` stays a deferred piece.
    public func render(_ resolve: (Reference) throws -> ReferenceValue) throws -> RenderedValue {
        var pieces: [RenderedValue.Piece] = []
        var pending: [UInt8] = []
        for segment in segments {
            switch segment {
            case .literal(let text): pending += Array(text.utf8)
            case .substitution(let filter, .servicePrivateKey):
                if !pending.isEmpty { pieces.append(.bytes(pending)); pending = [] }
                pieces.append(.servicePrivateKey(filter))
            case .substitution(let filter, let reference):
                guard let bytes = try resolve(reference).apply(filter) else {
                    throw RenderError.filterNotApplicable(filter: filter, reference: reference)
                }
                pending += bytes
            }
        }
        if !pending.isEmpty || pieces.isEmpty { pieces.append(.bytes(pending)) }
        return RenderedValue(pieces: pieces)
    }
}

public enum RenderError: Error, Equatable, Sendable, CustomStringConvertible {
    case filterNotApplicable(filter: Template.Filter, reference: Template.Reference)
    case secretNotSet(String)
    case unknownSecret(String)

    public var description: String {
        switch self {
        case .filterNotApplicable(let filter, let reference): return "filter '\(filter.rawValue)' does not apply to \(reference)"
        case .secretNotSet(let name): return "user-defined secret '\(name)' has not been set yet"
        case .unknownSecret(let name): return "unknown secret '\(name)'"
        }
    }
}
