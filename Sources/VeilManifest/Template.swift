import FoundationEssentials
import VeilCore

/// A value template: literal text with `{{ FILTER .REFERENCE }}` substitutions.
///
/// Filters: `pem`, `raw`, `hex`, `base64`, and `{{ pkcs12 .REFERENCE .Secrets.PASSWORD }}` for a
/// PKCS#12 file (see ``Segment/keyStore(_:password:)``). References:
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
        /// A PKCS#12 file whose password is the hex text of the secret named `password` (so a
        /// program's configuration names it with `{{ hex .Secrets.PASSWORD }}`). A private key
        /// (`.Veil.Service.Private`, `.Secrets.NAME.Private`) gives a key store with the key and
        /// its chain; a certificate gives a trust store trusting it.
        case keyStore(Reference, password: String)
    }

    public let source: String
    public let segments: [Segment]

    /// Every text substitution the template makes.
    public var references: [(filter: Filter, reference: Reference)] {
        segments.compactMap {
            if case .substitution(let filter, let reference) = $0 { return (filter, reference) }
            return nil
        }
    }

    /// Every PKCS#12 file the template makes.
    public var keyStores: [(reference: Reference, password: String)] {
        segments.compactMap {
            if case .keyStore(let reference, let password) = $0 { return (reference, password) }
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
            if directive.first == "pkcs12" {
                segments.append(try Self.keyStore(directive))
                rest = rest[close.upperBound...]
                continue
            }
            guard directive.count == 2 else {
                throw TemplateSyntaxError(message: "'{{\(rest[open.upperBound..<close.lowerBound])}}' must be '{{ FILTER .REFERENCE }}'")
            }
            guard let filter = Filter(rawValue: String(directive[0])) else {
                throw TemplateSyntaxError(message: "unknown filter '\(directive[0])' (use pem, raw, hex, base64 or pkcs12)")
            }
            segments.append(.substitution(filter, try Self.reference(String(directive[1]))))
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { segments.append(.literal(String(rest))) }
        self.segments = segments
    }

    private static func keyStore(_ directive: [Substring]) throws(TemplateSyntaxError) -> Segment {
        guard directive.count == 3 else {
            throw TemplateSyntaxError(message: "'pkcs12' takes what to store and its password: '{{ pkcs12 .REFERENCE .Secrets.PASSWORD }}'")
        }
        let reference = try Self.reference(String(directive[1]))
        switch reference {
        case .secret(_, nil), .secret(_, .publicKey?):
            throw TemplateSyntaxError(message: "'pkcs12' stores a private key (.Private) with its chain, or a certificate (.Cert) to trust, not \(reference)")
        default: break
        }
        guard case .secret(let password, nil) = try Self.reference(String(directive[2])) else {
            throw TemplateSyntaxError(message: "the password of 'pkcs12' is a secret, '.Secrets.NAME', not '\(directive[2])'")
        }
        return .keyStore(reference, password: password)
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

/// A template rendered by the coordinator: bytes, except where the launcher's own private key goes.
public struct RenderedValue: Codable, Sendable, Equatable {
    public enum Piece: Sendable, Equatable {
        case bytes([UInt8])
        /// The activation's private key in the given filter, filled in by the launcher.
        case servicePrivateKey(Template.Filter)
        /// A PKCS#12 key store with the activation's private key and `chain` (its certificate
        /// first), made by the launcher under `password`.
        case serviceKeyStore(chain: [[UInt8]], password: [UInt8])
    }

    public var pieces: [Piece]

    public init(pieces: [Piece]) {
        self.pieces = pieces
    }

    /// Fills in the service private key (PKCS#8 DER) and returns the final bytes.
    public func assemble(servicePrivateKeyDER: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        for piece in pieces {
            switch piece {
            case .bytes(let bytes): out += bytes
            case .servicePrivateKey(let filter):
                // `.der` takes every filter, so this cannot be nil.
                out += ReferenceValue.der(servicePrivateKeyDER, pemLabel: "PRIVATE KEY").apply(filter) ?? []
            case .serviceKeyStore(let chain, let password):
                out += try PKCS12.keyStore(privateKeyDER: servicePrivateKeyDER, chain: chain, password: password, alias: Template.Reference.servicePrivateKey.keyStoreAlias)
            }
        }
        return out
    }

    private struct WirePiece: Codable {
        var data: String?
        var servicePrivateKey: String?
        var serviceKeyStore: WireKeyStore?
    }

    private struct WireKeyStore: Codable {
        var chain: [String]
        var password: String
    }

    public init(from decoder: any Decoder) throws {
        let wire = try decoder.singleValueContainer().decode([WirePiece].self)
        pieces = try wire.map { piece in
            switch (piece.data, piece.servicePrivateKey, piece.serviceKeyStore) {
            case (let data?, nil, nil):
                if let bytes = Data(base64Encoded: data) { return .bytes(Array(bytes)) }
            case (nil, let name?, nil):
                if let filter = Template.Filter(rawValue: name) { return .servicePrivateKey(filter) }
            case (nil, nil, let store?):
                let chain = store.chain.compactMap { Data(base64Encoded: $0).map(Array.init) }
                if !chain.isEmpty, chain.count == store.chain.count, let password = Data(base64Encoded: store.password) {
                    return .serviceKeyStore(chain: chain, password: Array(password))
                }
            default: break
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
            case .serviceKeyStore(let chain, let password):
                return WirePiece(serviceKeyStore: WireKeyStore(
                    chain: chain.map { Data($0).base64EncodedString() }, password: Data(password).base64EncodedString()))
            }
        })
    }
}

extension Template {
    /// Renders with `resolve`; `.Veil.Service.Private` stays a deferred piece.
    public func render(_ resolve: (Reference) throws -> ReferenceValue) throws -> RenderedValue {
        var pieces: [RenderedValue.Piece] = []
        var pending: [UInt8] = []
        func flush() {
            if !pending.isEmpty { pieces.append(.bytes(pending)); pending = [] }
        }
        func der(_ reference: Reference) throws -> [UInt8] {
            guard case .der(let bytes, _) = try resolve(reference) else {
                throw RenderError.filterNotApplicable(filter: "pkcs12", reference: reference)
            }
            return bytes
        }
        for segment in segments {
            switch segment {
            case .literal(let text): pending += Array(text.utf8)
            case .substitution(let filter, .servicePrivateKey):
                flush()
                pieces.append(.servicePrivateKey(filter))
            case .substitution(let filter, let reference):
                guard let bytes = try resolve(reference).apply(filter) else {
                    throw RenderError.filterNotApplicable(filter: filter.rawValue, reference: reference)
                }
                pending += bytes
            case .keyStore(let reference, let passwordName):
                let passwordReference = Reference.secret(passwordName, nil)
                guard let password = try resolve(passwordReference).apply(.hex) else {
                    throw RenderError.filterNotApplicable(filter: "hex", reference: passwordReference)
                }
                switch reference {
                case .servicePrivateKey:
                    flush()
                    pieces.append(.serviceKeyStore(chain: [try der(.serviceCert), try der(.intermediateCACert)], password: password))
                case .secret(let name, .privateKey?):
                    pending += try PKCS12.keyStore(
                        privateKeyDER: try der(reference), chain: [try der(.secret(name, .cert)), try der(.intermediateCACert)],
                        password: password, alias: reference.keyStoreAlias)
                default:
                    pending += try PKCS12.trustStore(certificates: [try der(reference)], password: password, alias: reference.keyStoreAlias)
                }
            }
        }
        if !pending.isEmpty || pieces.isEmpty { pieces.append(.bytes(pending)) }
        return RenderedValue(pieces: pieces)
    }
}

extension Template.Reference {
    /// The entry's name in a PKCS#12 file (Java's alias).
    var keyStoreAlias: String {
        switch self {
        case .secret(let name, _): return name
        case .rootCACert: return "veil-root-ca"
        case .intermediateCACert: return "veil-intermediate-ca"
        case .serviceCert, .servicePrivateKey: return "veil-service"
        }
    }
}

public enum RenderError: Error, Equatable, Sendable, CustomStringConvertible {
    case filterNotApplicable(filter: String, reference: Template.Reference)
    case secretNotSet(String)
    case unknownSecret(String)

    public var description: String {
        switch self {
        case .filterNotApplicable(let filter, let reference): return "filter '\(filter)' does not apply to \(reference)"
        case .secretNotSet(let name): return "user-defined secret '\(name)' has not been set yet"
        case .unknownSecret(let name): return "unknown secret '\(name)'"
        }
    }
}
