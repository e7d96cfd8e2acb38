import Glibc
import VeilAttestation
import VeilCore
import X509

/// One thing wrong with a manifest, at a JSON path such as `$.Services.web.Package`.
public struct ManifestProblem: Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}

/// Every problem found in a manifest, in document order of discovery (sorted by path).
public struct ManifestValidationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let problems: [ManifestProblem]
    public var description: String {
        "invalid manifest (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n"
            + problems.map { "  \($0)" }.joined(separator: "\n")
    }
}

extension Manifest {
    /// The largest manifest accepted, in bytes.
    public static let maximumSize = 1 << 20

    /// Parses and validates a manifest; on failure the error lists every problem.
    public static func parse(_ bytes: [UInt8]) throws(ManifestValidationError) -> Manifest {
        var parser = ManifestParser()
        guard bytes.count <= maximumSize else {
            throw ManifestValidationError(problems: [ManifestProblem(path: "$", message: "manifest is larger than \(maximumSize) bytes")])
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw ManifestValidationError(problems: [ManifestProblem(path: error.path, message: "not valid JSON: \(error.reason) (byte \(error.offset))")])
        }
        let manifest = parser.manifest(json, raw: bytes)
        guard parser.problems.isEmpty, let manifest else {
            throw ManifestValidationError(problems: parser.problems.sorted { $0.path < $1.path })
        }
        return manifest
    }
}

/// Walks the JSON once, collecting problems instead of stopping at the first.
struct ManifestParser {
    var problems: [ManifestProblem] = []

    mutating func problem(_ path: String, _ message: String) {
        problems.append(ManifestProblem(path: path, message: message))
    }

    mutating func object(_ value: JSONValue?, _ path: String, allowed: Set<String>) -> [String: JSONValue]? {
        guard let value else { return nil }
        guard case .object(let fields) = value else {
            problem(path, "must be an object, found \(value.typeName)")
            return nil
        }
        for key in fields.keys.sorted() where !allowed.contains(key) {
            problem("\(path).\(key)", "unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        return fields
    }

    mutating func map(_ value: JSONValue?, _ path: String) -> [String: JSONValue] {
        guard let value else { return [:] }
        guard case .object(let fields) = value else {
            problem(path, "must be an object, found \(value.typeName)")
            return [:]
        }
        return fields
    }

    mutating func string(_ value: JSONValue?, _ path: String) -> String? {
        guard let value else { return nil }
        guard case .string(let text) = value else {
            problem(path, "must be a string, found \(value.typeName)")
            return nil
        }
        return text
    }

    mutating func bool(_ value: JSONValue?, _ path: String) -> Bool? {
        guard let value else { return nil }
        guard case .bool(let flag) = value else {
            problem(path, "must be true or false, found \(value.typeName)")
            return nil
        }
        return flag
    }

    mutating func integer(_ value: JSONValue?, _ path: String, in range: ClosedRange<Int>) -> Int? {
        guard let value else { return nil }
        guard case .number(let number) = value, number.rounded() == number, number >= Double(range.lowerBound),
            number <= Double(range.upperBound)
        else {
            problem(path, "must be an integer in \(range.lowerBound)...\(range.upperBound)")
            return nil
        }
        return Int(number)
    }

    mutating func hex(_ value: JSONValue?, _ path: String, bytes: Int?) -> [UInt8]? {
        guard var text = string(value, path) else { return nil }
        if text.hasPrefix("sha256:") { text.removeFirst("sha256:".count) }
        guard let decoded = Hex.decode(text), bytes == nil || decoded.count == bytes! else {
            problem(path, "must be \(bytes.map { "\($0) bytes of " } ?? "")hex")
            return nil
        }
        return decoded
    }

    mutating func manifest(_ json: JSONValue, raw: [UInt8]) -> Manifest? {
        guard let root = object(json, "$", allowed: ["Packages", "Services", "Secrets", "Config", "Users", "Roles", "RecoveryKeys"]) else { return nil }
        if root["Packages"] == nil { problem("$.Packages", "required") }
        if root["Services"] == nil { problem("$.Services", "required") }

        let config = config(root["Config"])
        let coordinatorPackages = config.coordinatorPackages
        let packageFields = map(root["Packages"], "$.Packages")
        let secretFields = map(root["Secrets"], "$.Secrets")
        var packages: [String: Package] = [:]
        for (name, value) in packageFields {
            if let package = package(value, "$.Packages.\(name)", allowSimulation: config.allowSimulation) { packages[name] = package }
        }
        var secrets: [String: SecretSpec] = [:]
        for (name, value) in secretFields {
            if let problem = NameRule.secretNameProblem(name) { self.problem("$.Secrets.\(name)", problem) }
            if let secret = secret(value, "$.Secrets.\(name)") { secrets[name] = secret }
        }
        let secretNames = Set(secretFields.keys)
        let packageNames = Set(packageFields.keys)
        for (index, name) in coordinatorPackages.enumerated() where !packageNames.contains(name) {
            problem("$.Config.CoordinatorPackages[\(index)]", "unknown package '\(name)'")
        }

        var services: [String: Manifest.Service] = [:]
        let serviceFields = map(root["Services"], "$.Services")
        for (name, value) in serviceFields {
            let path = "$.Services.\(name)"
            if let problem = NameRule.serviceNameProblem(name) { self.problem(path, problem) }
            if let service = service(value, path, packageNames: packageNames, secrets: secrets, secretNames: secretNames, serviceNames: Set(serviceFields.keys)) {
                services[name] = service
            }
        }
        checkKBSPackages(services, packages: packages)

        var manifest = Manifest(packages: packages, services: services, secrets: secrets, config: config, raw: raw)
        manifest.roles = roles(root["Roles"], secretNames: secretNames, packageNames: packageNames)
        manifest.users = users(root["Users"], roleNames: Set(map(root["Roles"], "$.Roles").keys))
        manifest.recoveryKeys = recoveryKeys(root["RecoveryKeys"], threshold: config.recoveryThreshold)
        if let required = config.updateAcknowledgements {
            let updaters = manifest.users.values.filter { manifest.allows($0, .updateManifest, on: nil) }.count
            if required > updaters {
                problem("$.Config.UpdateAcknowledgements", "\(required) acknowledgements required, but only \(updaters) users may UpdateManifest")
            }
        }
        return manifest
    }

    mutating func config(_ value: JSONValue?) -> Manifest.Config {
        var config = Manifest.Config()
        let allowed: Set<String> = ["AllowSimulation", "AcceptedTCBStatuses", "AcceptedAdvisories", "UpdateAcknowledgements", "RecoveryThreshold", "CoordinatorPackages", "TrustDomain"]
        guard let fields = object(value, "$.Config", allowed: allowed) else { return config }
        config.coordinatorPackages = stringArray(fields["CoordinatorPackages"], "$.Config.CoordinatorPackages")
        config.allowSimulation = bool(fields["AllowSimulation"], "$.Config.AllowSimulation") ?? false
        config.updateAcknowledgements = integer(fields["UpdateAcknowledgements"], "$.Config.UpdateAcknowledgements", in: 1...1000)
        config.recoveryThreshold = integer(fields["RecoveryThreshold"], "$.Config.RecoveryThreshold", in: 1...255)
        config.trustDomain = string(fields["TrustDomain"], "$.Config.TrustDomain")
        if let domain = config.trustDomain, !CoordinatorIdentity.isTrustDomain(domain) {
            problem("$.Config.TrustDomain", "a SPIFFE trust domain is 1-255 lowercase letters, digits, '.', '-' or '_', not '\(domain)'")
        }
        let tcb = tcbAcceptanceFields(fields, "$.Config")
        if let statuses = tcb.statuses { config.tcb.statuses = statuses }
        config.tcb.advisories = tcb.advisories
        return config
    }

    /// `AcceptedTCBStatuses` (not empty, never `Revoked`) and `AcceptedAdvisories` (Intel
    /// advisory IDs, `INTEL-SA-NNNNN`) of `Config` or an SGX/TDX package.
    mutating func tcbAcceptanceFields(_ fields: [String: JSONValue], _ path: String) -> TCBAcceptanceFields {
        var result = TCBAcceptanceFields()
        if fields["AcceptedTCBStatuses"] != nil {
            var accepted = Set<TCBStatus>()
            for (index, name) in stringArray(fields["AcceptedTCBStatuses"], "\(path).AcceptedTCBStatuses").enumerated() {
                if let status = TCBStatus(rawValue: name), status != .revoked {
                    accepted.insert(status)
                } else {
                    problem("\(path).AcceptedTCBStatuses[\(index)]",
                            "'\(name)' is not an acceptable TCB status (\(TCBStatus.allCases.filter { $0 != .revoked }.map(\.rawValue).joined(separator: ", ")))")
                }
            }
            if accepted.isEmpty { problem("\(path).AcceptedTCBStatuses", "must name at least one status") }
            result.statuses = accepted
        }
        if fields["AcceptedAdvisories"] != nil {
            var advisories = Set<String>()
            for (index, id) in stringArray(fields["AcceptedAdvisories"], "\(path).AcceptedAdvisories").enumerated() {
                let digits = id.dropFirst("INTEL-SA-".count)
                if id.hasPrefix("INTEL-SA-"), digits.count == 5, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
                    advisories.insert(id)
                } else {
                    problem("\(path).AcceptedAdvisories[\(index)]", "'\(id)' is not an Intel advisory ID (INTEL-SA-NNNNN)")
                }
            }
            result.advisories = advisories
        }
        return result
    }

    /// `RecoveryKeys`: distinct keys, at most 255, and enough of them for the threshold.
    mutating func recoveryKeys(_ value: JSONValue?, threshold: Int?) -> [String: RecoveryKey] {
        var keys: [String: RecoveryKey] = [:]
        var fingerprints: [String: String] = [:]
        for (name, value) in map(value, "$.RecoveryKeys").sorted(by: { $0.key < $1.key }) {
            let path = "$.RecoveryKeys.\(name)"
            guard let pem = string(value, path) else { continue }
            do {
                let key = try RecoveryKey(pem: pem)
                if let other = fingerprints[key.fingerprint] { problem(path, "same key as recovery key '\(other)'") }
                fingerprints[key.fingerprint] = name
                keys[name] = key
            } catch {
                problem(path, "\(error)")
            }
        }
        if keys.count > 255 { problem("$.RecoveryKeys", "at most 255 recovery keys") }
        if let threshold, threshold > max(1, fingerprints.count) || fingerprints.isEmpty {
            problem("$.Config.RecoveryThreshold", "\(threshold) shares required, but the manifest has \(fingerprints.count) RecoveryKeys")
        }
        return keys
    }
}
