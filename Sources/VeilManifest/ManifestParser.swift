import Glibc
import VeilAttestation
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

        var config = Manifest.Config()
        var coordinatorPackages: [String] = []
        if let fields = object(root["Config"], "$.Config", allowed: ["AllowSimulation", "AcceptedTCBStatuses", "UpdateAcknowledgements", "RecoveryThreshold", "CoordinatorPackages"]) {
            coordinatorPackages = stringArray(fields["CoordinatorPackages"], "$.Config.CoordinatorPackages")
            config.coordinatorPackages = coordinatorPackages
            config.allowSimulation = bool(fields["AllowSimulation"], "$.Config.AllowSimulation") ?? false
            config.updateAcknowledgements = integer(fields["UpdateAcknowledgements"], "$.Config.UpdateAcknowledgements", in: 1...1000)
            config.recoveryThreshold = integer(fields["RecoveryThreshold"], "$.Config.RecoveryThreshold", in: 1...255)
            if fields["AcceptedTCBStatuses"] != nil {
                var accepted = Set<TCBStatus>()
                for (index, name) in stringArray(fields["AcceptedTCBStatuses"], "$.Config.AcceptedTCBStatuses").enumerated() {
                    if let status = TCBStatus(rawValue: name), status != .revoked {
                        accepted.insert(status)
                    } else {
                        problem("$.Config.AcceptedTCBStatuses[\(index)]",
                                "'\(name)' is not an acceptable TCB status (\(TCBStatus.allCases.filter { $0 != .revoked }.map(\.rawValue).joined(separator: ", ")))")
                    }
                }
                if accepted.isEmpty { problem("$.Config.AcceptedTCBStatuses", "must name at least one status") }
                config.acceptedTCBStatuses = accepted
            }
        }
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

        var manifest = Manifest(packages: packages, services: services, secrets: secrets, config: config, raw: raw)
        manifest.roles = roles(root["Roles"], secretNames: secretNames, packageNames: packageNames)
        manifest.users = users(root["Users"], roleNames: Set(map(root["Roles"], "$.Roles").keys))
        var fingerprints: [String: String] = [:]
        for (name, value) in map(root["RecoveryKeys"], "$.RecoveryKeys").sorted(by: { $0.key < $1.key }) {
            let path = "$.RecoveryKeys.\(name)"
            guard let pem = string(value, path) else { continue }
            do {
                let key = try RecoveryKey(pem: pem)
                if let other = fingerprints[key.fingerprint] { problem(path, "same key as recovery key '\(other)'") }
                fingerprints[key.fingerprint] = name
                manifest.recoveryKeys[name] = key
            } catch {
                problem(path, "\(error)")
            }
        }
        if manifest.recoveryKeys.count > 255 { problem("$.RecoveryKeys", "at most 255 recovery keys") }
        if let threshold = config.recoveryThreshold, threshold > max(1, fingerprints.count) || fingerprints.isEmpty {
            problem("$.Config.RecoveryThreshold", "\(threshold) shares required, but the manifest has \(fingerprints.count) RecoveryKeys")
        }
        if let required = config.updateAcknowledgements {
            let updaters = manifest.users.values.filter { manifest.allows($0, .updateManifest, on: nil) }.count
            if required > updaters {
                problem("$.Config.UpdateAcknowledgements", "\(required) acknowledgements required, but only \(updaters) users may UpdateManifest")
            }
        }
        return manifest
    }

    mutating func roles(_ value: JSONValue?, secretNames: Set<String>, packageNames: Set<String>) -> [String: Role] {
        var roles: [String: Role] = [:]
        for (name, value) in map(value, "$.Roles") {
            let path = "$.Roles.\(name)"
            guard let fields = object(value, path, allowed: ["ResourceType", "ResourceNames", "Actions"]) else { continue }
            let before = problems.count
            var type: ResourceType?
            if let text = string(fields["ResourceType"], "\(path).ResourceType") {
                type = ResourceType(rawValue: text)
                if type == nil { problem("\(path).ResourceType", "unknown resource type '\(text)' (known: \(ResourceType.allCases.map(\.rawValue).joined(separator: ", ")))") }
            } else if fields["ResourceType"] == nil {
                problem("\(path).ResourceType", "required")
            }
            let names = stringArray(fields["ResourceNames"], "\(path).ResourceNames")
            var actions = Set<Action>()
            for (index, text) in stringArray(fields["Actions"], "\(path).Actions").enumerated() {
                guard let action = Action(rawValue: text) else {
                    problem("\(path).Actions[\(index)]", "unknown action '\(text)' (known: \(Action.allCases.map(\.rawValue).joined(separator: ", ")))")
                    continue
                }
                if let type, action.resourceType != type {
                    problem("\(path).Actions[\(index)]", "\(text) applies to \(action.resourceType.rawValue), not \(type.rawValue)")
                }
                actions.insert(action)
            }
            if actions.isEmpty && fields["Actions"] != nil { problem("\(path).Actions", "must name at least one action") }
            if fields["Actions"] == nil { problem("\(path).Actions", "required") }
            switch type {
            case .manifest?:
                if !names.isEmpty { problem("\(path).ResourceNames", "Manifest roles take no resource names") }
            case .secrets?, .packages?:
                let known = type == .secrets ? secretNames : packageNames
                if names.isEmpty { problem("\(path).ResourceNames", "required: the \(type!.rawValue.lowercased()) this role covers") }
                for (index, resource) in names.enumerated() where !known.contains(resource) {
                    problem("\(path).ResourceNames[\(index)]", "unknown \(type == .secrets ? "secret" : "package") '\(resource)'")
                }
            case nil:
                break
            }
            guard problems.count == before, let type else { continue }
            roles[name] = Role(resourceType: type, resourceNames: Set(names), actions: actions)
        }
        return roles
    }

    mutating func users(_ value: JSONValue?, roleNames: Set<String>) -> [String: User] {
        var users: [String: User] = [:]
        var owners: [[UInt8]: String] = [:]
        for (name, value) in map(value, "$.Users").sorted(by: { $0.key < $1.key }) {
            let path = "$.Users.\(name)"
            guard let fields = object(value, path, allowed: ["Certificate", "Roles"]) else { continue }
            let before = problems.count
            var der: [UInt8]?
            if let pem = string(fields["Certificate"], "\(path).Certificate") {
                der = (try? Certificate(pemEncoded: pem)).flatMap { try? $0.derBytes }
                if der == nil { problem("\(path).Certificate", "not a PEM X.509 certificate") }
            } else if fields["Certificate"] == nil {
                problem("\(path).Certificate", "required: the PEM certificate the user's HTTPS client presents")
            }
            if let der, let owner = owners[der] { problem("\(path).Certificate", "same certificate as user '\(owner)'") }
            let roles = stringArray(fields["Roles"], "\(path).Roles")
            for (index, role) in roles.enumerated() where !roleNames.contains(role) {
                problem("\(path).Roles[\(index)]", "unknown role '\(role)'")
            }
            guard problems.count == before, let der else { continue }
            owners[der] = name
            users[name] = User(certificateDER: der, roles: roles)
        }
        return users
    }

    mutating func package(_ value: JSONValue, _ path: String, allowSimulation: Bool) -> Package? {
        guard case .object(let raw) = value else {
            problem(path, "must be an object, found \(value.typeName)")
            return nil
        }
        let before = problems.count
        // Fields are checked against the declared kind even when that kind is refused, so
        // every problem is reported at once.
        var declared: TEEKind?
        if let text = string(raw["Kind"], "\(path).Kind") {
            declared = TEEKind(rawValue: text)
            switch declared {
            case .simulated where !allowSimulation:
                problem("\(path).Kind", "simulated packages need \"Config\": {\"AllowSimulation\": true} (development only: no confidentiality)")
            case nil: problem("\(path).Kind", "unknown kind '\(text)' (known: simulated, sgx, tdx, snp)")
            default: break
            }
        } else if raw["Kind"] == nil {
            problem("\(path).Kind", "required")
        }
        let kind = declared ?? .simulated
        let allowed: Set<String>
        switch kind {
        case .sgx: allowed = ["Kind", "UniqueID", "SignerID", "ProductID", "SecurityVersion", "Debug"]
        case .tdx: allowed = ["Kind", "MRTD", "RTMR0", "RTMR1", "RTMR2", "RTMR3", "MRConfigID", "MROwner", "MRSeam", "ImageMeasurement", "Debug"]
        case .snp: allowed = ["Kind", "Measurement", "HostData", "IDKeyDigest", "MinimumTCB", "AllowMigrationAgent", "VMPL", "ImageMeasurement", "Debug"]
        case .simulated: allowed = ["Kind", "Measurement", "SignerID", "ProductID", "SecurityVersion", "Debug"]
        }
        guard let fields = object(value, path, allowed: allowed) else { return nil }
        var package = Package(kind: kind, debug: bool(fields["Debug"], "\(path).Debug") ?? false)
        // Confidential VMs: the container image's measurement, bound by the launcher in the VM.
        package.imageMeasurement = hex(fields["ImageMeasurement"], "\(path).ImageMeasurement", bytes: 32)
        if package.imageMeasurement?.allSatisfy({ $0 == 0 }) == true { problem("\(path).ImageMeasurement", "must not be all zero") }
        switch kind {
        case .snp:
            package.measurement = hex(fields["Measurement"], "\(path).Measurement", bytes: 48)
            if fields["Measurement"] == nil { problem("\(path).Measurement", "required: the guest's launch measurement (48 bytes)") }
            package.signerID = hex(fields["IDKeyDigest"], "\(path).IDKeyDigest", bytes: 48)
            package.snp = SNPRequirements(
                minimumTCB: minimumTCB(fields["MinimumTCB"], "\(path).MinimumTCB") ?? .any,
                // VMPL 0 unless stated: a report from above an SVSM is not the guest kernel's.
                vmpl: integer(fields["VMPL"], "\(path).VMPL", in: 0...3).map(UInt32.init) ?? 0,
                allowDebug: package.debug,
                allowMigrationAgent: bool(fields["AllowMigrationAgent"], "\(path).AllowMigrationAgent") ?? false,
                hostData: hex(fields["HostData"], "\(path).HostData", bytes: 32))
        case .tdx:
            package.measurement = hex(fields["MRTD"], "\(path).MRTD", bytes: 48)
            if fields["MRTD"] == nil { problem("\(path).MRTD", "required: the TD's build-time measurement") }
            for index in 0..<4 {
                package.rtmrs[index] = hex(fields["RTMR\(index)"], "\(path).RTMR\(index)", bytes: 48)
            }
            package.mrConfigID = hex(fields["MRConfigID"], "\(path).MRConfigID", bytes: 48)
            package.mrOwner = hex(fields["MROwner"], "\(path).MROwner", bytes: 48)
            package.mrSeam = hex(fields["MRSeam"], "\(path).MRSeam", bytes: 48)
        default:
            let measurementField = kind == .sgx ? "UniqueID" : "Measurement"
            package.measurement = hex(fields[measurementField], "\(path).\(measurementField)", bytes: 32)
            package.signerID = hex(fields["SignerID"], "\(path).SignerID", bytes: kind == .sgx ? 32 : nil)
            package.productID = integer(fields["ProductID"], "\(path).ProductID", in: 0...Int(UInt16.max)).map(UInt16.init)
            package.securityVersion = integer(fields["SecurityVersion"], "\(path).SecurityVersion", in: 0...Int(UInt16.max)).map(UInt16.init)
            if fields[measurementField] == nil && fields["SignerID"] == nil {
                problem(path, "needs \(measurementField), or SignerID (with ProductID and SecurityVersion): otherwise any software would match")
            }
            if fields["SignerID"] != nil && (fields["ProductID"] == nil || fields["SecurityVersion"] == nil) {
                problem(path, "SignerID needs ProductID and SecurityVersion too")
            }
        }
        guard problems.count == before else { return nil }
        return package
    }

    mutating func secret(_ value: JSONValue, _ path: String) -> SecretSpec? {
        guard let fields = object(value, path, allowed: ["Type", "Size", "UserDefined", "Cert"]) else { return nil }
        let before = problems.count
        guard let typeName = string(fields["Type"], "\(path).Type") else {
            if fields["Type"] == nil { problem("\(path).Type", "required") }
            return nil
        }
        guard let kind = SecretSpec.Kind(rawValue: typeName) else {
            problem("\(path).Type", "unknown type '\(typeName)' (known: \(SecretSpec.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
            return nil
        }
        let userDefined = bool(fields["UserDefined"], "\(path).UserDefined") ?? false
        var size = integer(fields["Size"], "\(path).Size", in: 0...65536)
        let allowedSizes: [Int]
        switch kind {
        case .certECDSA: allowedSizes = [256, 384]
        case .certRSA: allowedSizes = [2048, 3072, 4096]
        case .certEd25519: allowedSizes = [256]
        case .symmetricKey: allowedSizes = [128, 192, 256]
        case .plain: allowedSizes = []
        }
        if fields["Size"] == nil {
            if kind == .plain && !userDefined { problem("\(path).Size", "required for generated plain secrets (bytes, 1...4096)") }
            size = kind == .symmetricKey ? 256 : allowedSizes.first ?? 0
        } else if let given = size {
            if kind == .plain {
                if userDefined { problem("\(path).Size", "user-defined secrets take no Size") }
                else if !(1...4096).contains(given) { problem("\(path).Size", "plain secret size must be 1...4096 bytes") }
            } else if !allowedSizes.contains(given) {
                problem("\(path).Size", "\(kind.rawValue) size \(given) is not supported (use \(allowedSizes.map(String.init).joined(separator: " or ")))")
            }
        }
        if userDefined && kind.isCertificate {
            problem("\(path).UserDefined", "user-defined certificates are not supported; use plain or symmetric-key")
        }
        var certificate: SecretSpec.CertificateSpec?
        if kind.isCertificate {
            certificate = certificateSpec(fields["Cert"], "\(path).Cert")
        } else if fields["Cert"] != nil {
            problem("\(path).Cert", "only certificate secrets take Cert")
        }
        guard problems.count == before else { return nil }
        return SecretSpec(kind: kind, size: size ?? 0, userDefined: userDefined, certificate: certificate)
    }

    mutating func certificateSpec(_ value: JSONValue?, _ path: String) -> SecretSpec.CertificateSpec? {
        guard let value else {
            problem(path, "required for certificate secrets (at least Subject.CommonName)")
            return nil
        }
        guard let fields = object(value, path, allowed: ["Subject", "DNSNames", "IPAddresses", "ValidFor"]) else { return nil }
        guard let subject = object(fields["Subject"], "\(path).Subject", allowed: ["CommonName", "Organization"]) else {
            if fields["Subject"] == nil { problem("\(path).Subject", "required") }
            return nil
        }
        guard let commonName = string(subject["CommonName"], "\(path).Subject.CommonName"), !commonName.isEmpty else {
            problem("\(path).Subject.CommonName", "required, non-empty")
            return nil
        }
        var spec = SecretSpec.CertificateSpec(commonName: commonName)
        spec.organization = string(subject["Organization"], "\(path).Subject.Organization")
        spec.dnsNames = stringArray(fields["DNSNames"], "\(path).DNSNames")
        for (index, name) in spec.dnsNames.enumerated() {
            if let problem = NameRule.dnsNameProblem(name, wildcard: true) { self.problem("\(path).DNSNames[\(index)]", problem) }
        }
        spec.ipAddresses = stringArray(fields["IPAddresses"], "\(path).IPAddresses")
        for (index, address) in spec.ipAddresses.enumerated() where IPAddress.bytes(address) == nil {
            problem("\(path).IPAddresses[\(index)]", "'\(address)' is not an IPv4 or IPv6 address")
        }
        spec.validForDays = integer(fields["ValidFor"], "\(path).ValidFor", in: 1...3650) ?? 365
        return spec
    }

    mutating func stringArray(_ value: JSONValue?, _ path: String) -> [String] {
        guard let value else { return [] }
        guard case .array(let items) = value else {
            problem(path, "must be an array of strings, found \(value.typeName)")
            return []
        }
        return items.enumerated().compactMap { string($1, "\(path)[\($0)]") }
    }

    mutating func service(
        _ value: JSONValue, _ path: String, packageNames: Set<String>, secrets: [String: SecretSpec], secretNames: Set<String>,
        serviceNames: Set<String>
    ) -> Manifest.Service? {
        guard let fields = object(value, path, allowed: ["Package", "MaxActivations", "Parameters", "ProtectedFilesKey", "AllowDiskFiles", "Mesh"]) else { return nil }
        let before = problems.count
        let package = string(fields["Package"], "\(path).Package")
        if let package, !packageNames.contains(package) {
            problem("\(path).Package", "unknown package '\(package)'")
        } else if fields["Package"] == nil {
            problem("\(path).Package", "required")
        }
        let maxActivations = integer(fields["MaxActivations"], "\(path).MaxActivations", in: 0...Int(Int32.max)) ?? 0
        var parameters = Manifest.Parameters()
        if let params = object(fields["Parameters"], "\(path).Parameters", allowed: ["Files", "Env", "Argv"]) {
            let templatePath = "\(path).Parameters"
            for (file, value) in map(params["Files"], "\(templatePath).Files") {
                let filePath = "\(templatePath).Files[\"\(file)\"]"
                if let problem = FilePathRule.problem(file) { self.problem(filePath, problem) }
                if let template = template(value, filePath, secrets: secrets, secretNames: secretNames) {
                    parameters.files[file] = template
                }
            }
            for (name, value) in map(params["Env"], "\(templatePath).Env") {
                let envPath = "\(templatePath).Env.\(name)"
                if name.isEmpty || name.contains("=") || name.contains("\0") {
                    problem(envPath, "environment variable names must be non-empty without '=' or NUL")
                }
                if let template = template(value, envPath, secrets: secrets, secretNames: secretNames, isText: true) {
                    parameters.env[name] = template
                }
            }
            if let argv = params["Argv"] {
                if case .array(let items) = argv, !items.isEmpty {
                    let templates = items.enumerated().compactMap {
                        template($1, "\(templatePath).Argv[\($0)]", secrets: secrets, secretNames: secretNames, isText: true)
                    }
                    if templates.count == items.count { parameters.argv = templates }
                } else {
                    problem("\(templatePath).Argv", "must be a non-empty array of strings")
                }
            }
        }
        let protectedFilesKey = string(fields["ProtectedFilesKey"], "\(path).ProtectedFilesKey")
        if let protectedFilesKey {
            if let spec = secrets[protectedFilesKey] {
                if spec.kind != .symmetricKey || spec.size != 256 {
                    problem("\(path).ProtectedFilesKey", "secret '\(protectedFilesKey)' must be a symmetric-key of Size 256 (usually UserDefined)")
                }
            } else if !secretNames.contains(protectedFilesKey) {
                problem("\(path).ProtectedFilesKey", "unknown secret '\(protectedFilesKey)'")
            }
        }
        let mesh = fields["Mesh"].map { self.mesh($0, "\(path).Mesh", serviceNames: serviceNames) } ?? nil
        guard problems.count == before, let package else { return nil }
        return Manifest.Service(
            package: package, maxActivations: maxActivations, parameters: parameters, protectedFilesKey: protectedFilesKey,
            allowDiskFiles: bool(fields["AllowDiskFiles"], "\(path).AllowDiskFiles") ?? false, mesh: mesh)
    }

    /// `{"Ingress": [{"Listen", "Forward", "Clients"}], "Egress": [{"Listen", "Service", "Address"}]}`.
    mutating func mesh(_ value: JSONValue, _ path: String, serviceNames: Set<String>) -> MeshPolicy? {
        guard let fields = object(value, path, allowed: ["Ingress", "Egress"]) else { return nil }
        var mesh = MeshPolicy()
        var listening: [String: String] = [:]
        func address(_ value: JSONValue?, _ path: String, loopback: Bool) -> String? {
            guard let text = string(value, path) else {
                if value == nil { problem(path, "required: HOST:PORT") }
                return nil
            }
            guard let parsed = HostPort.parse(text) else {
                problem(path, "'\(text)' is not HOST:PORT (IPv6 in brackets)")
                return nil
            }
            if loopback && !HostPort.isLoopback(parsed.host) {
                problem(path, "'\(text)' carries plaintext: it must be on loopback (127.0.0.1, ::1, localhost)")
            }
            return text
        }
        func listen(_ value: JSONValue?, _ path: String, loopback: Bool) -> String? {
            let text = address(value, path, loopback: loopback)
            if let text {
                if let other = listening[text] { problem(path, "'\(text)' is already the listener of \(other)") }
                listening[text] = path
            }
            return text
        }
        for (index, item) in arrayItems(fields["Ingress"], "\(path).Ingress").enumerated() {
            let itemPath = "\(path).Ingress[\(index)]"
            guard let rule = object(item, itemPath, allowed: ["Listen", "Forward", "Clients"]) else { continue }
            let clients = stringArray(rule["Clients"], "\(itemPath).Clients")
            if rule["Clients"] == nil || clients.isEmpty { problem("\(itemPath).Clients", "required: the services allowed to connect") }
            for (position, client) in clients.enumerated() where !serviceNames.contains(client) {
                problem("\(itemPath).Clients[\(position)]", "unknown service '\(client)'")
            }
            let listenAddress = listen(rule["Listen"], "\(itemPath).Listen", loopback: false)
            let forward = address(rule["Forward"], "\(itemPath).Forward", loopback: true)
            if let listen = listenAddress, let forward {
                mesh.ingress.append(.init(listen: listen, forward: forward, clients: clients))
            }
        }
        for (index, item) in arrayItems(fields["Egress"], "\(path).Egress").enumerated() {
            let itemPath = "\(path).Egress[\(index)]"
            guard let rule = object(item, itemPath, allowed: ["Listen", "Service", "Address"]) else { continue }
            let service = string(rule["Service"], "\(itemPath).Service")
            if let service, !serviceNames.contains(service) { problem("\(itemPath).Service", "unknown service '\(service)'") }
            if rule["Service"] == nil { problem("\(itemPath).Service", "required: the service the peer must prove to be") }
            let listenAddress = listen(rule["Listen"], "\(itemPath).Listen", loopback: true)
            let remote = address(rule["Address"], "\(itemPath).Address", loopback: false)
            if let listen = listenAddress, let remote, let service {
                mesh.egress.append(.init(listen: listen, service: service, address: remote))
            }
        }
        return mesh.isEmpty ? nil : mesh
    }

    mutating func arrayItems(_ value: JSONValue?, _ path: String) -> [JSONValue] {
        guard let value else { return [] }
        guard case .array(let items) = value else {
            problem(path, "must be an array, found \(value.typeName)")
            return []
        }
        return items
    }

    /// `isText`: an environment variable or argument, which must render to text.
    mutating func template(_ value: JSONValue, _ path: String, secrets: [String: SecretSpec], secretNames: Set<String>, isText: Bool = false) -> Template? {
        guard let text = string(value, path) else { return nil }
        let template: Template
        do {
            template = try Template(text)
        } catch {
            problem(path, error.message)
            return nil
        }
        var ok = true
        for (filter, reference) in template.references {
            guard case .secret(let name, let part) = reference else { continue }
            guard secretNames.contains(name) else {
                problem(path, "unknown secret '\(name)'")
                ok = false
                continue
            }
            // A secret with its own problems was reported already.
            guard let spec = secrets[name] else { continue }
            if spec.kind.isCertificate {
                if part == nil {
                    problem(path, "\(reference) is a certificate secret: name .Cert, .Private or .Public")
                    ok = false
                }
            } else {
                if part != nil {
                    problem(path, "\(reference): only certificate secrets have .Cert/.Private/.Public")
                    ok = false
                } else if filter == .pem {
                    problem(path, "filter 'pem' does not apply to \(spec.kind.rawValue) secret '\(name)' (use raw, hex or base64)")
                    ok = false
                }
            }
        }
        if isText && !template.keyStores.isEmpty {
            problem(path, "'pkcs12' renders a binary file: use it in Files (environment variables and arguments are text)")
            ok = false
        }
        for (reference, password) in template.keyStores {
            if case .secret(let name, _) = reference {
                if !secretNames.contains(name) {
                    problem(path, "unknown secret '\(name)'")
                    ok = false
                } else if let spec = secrets[name], !spec.kind.isCertificate {
                    problem(path, "'pkcs12' stores certificate secrets; '\(name)' is a \(spec.kind.rawValue) secret")
                    ok = false
                }
            }
            if !secretNames.contains(password) {
                problem(path, "unknown secret '\(password)' (the password of 'pkcs12')")
                ok = false
            } else if let spec = secrets[password], spec.kind.isCertificate {
                problem(path, "the password of 'pkcs12' must be a plain or symmetric-key secret; '\(password)' is a certificate")
                ok = false
            }
        }
        return ok ? template : nil
    }
}

/// Which file paths a manifest may name: absolute, normalized, no `..`.
public enum FilePathRule {
    /// Why `path` is not acceptable, or `nil`.
    public static func problem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "file paths must be absolute" }
        guard !path.hasSuffix("/") else { return "file path names a directory" }
        guard !path.contains("\0") else { return "file path contains NUL" }
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        if components.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) {
            return "file path must be normalized (no '.', '..' or '//')"
        }
        return nil
    }
}

/// Which names a manifest may give services, secrets and certificate secrets' DNS names.
///
/// A service name becomes its activation certificate's DNS name and common name, so it must be
/// a lowercase DNS name, never an IP address or `localhost` (a certificate for those would be
/// accepted by any local client of another service). Secret names are referenced in templates
/// (`.Secrets.NAME`) and URLs, so they are identifiers.
public enum NameRule {
    public static func serviceNameProblem(_ name: String) -> String? {
        if let problem = dnsNameProblem(name, wildcard: false) { return "service name: \(problem)" }
        if name != name.lowercased() {
            return "service names are lowercase (they become certificate DNS names)"
        }
        if name == "localhost" || name.hasSuffix(".localhost") { return "service name '\(name)' is reserved for the local host" }
        return nil
    }

    public static func secretNameProblem(_ name: String) -> String? {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        guard !name.isEmpty, name.count <= 128, name.allSatisfy(allowed.contains) else {
            return "secret names are 1 to 128 letters, digits, '_' or '-' (they appear in templates as .Secrets.NAME)"
        }
        return nil
    }

    /// Why `name` is not a DNS name (RFC 1123 labels; `*.` first label when `wildcard`).
    public static func dnsNameProblem(_ name: String, wildcard: Bool) -> String? {
        if IPAddress.bytes(name) != nil { return "'\(name)' is an IP address, not a DNS name" }
        var labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if wildcard, labels.first == "*", labels.count > 2 { labels.removeFirst() }
        guard !name.isEmpty, name.utf8.count <= 253, !labels.isEmpty else { return "'\(name)' is not a DNS name (1 to 253 characters)" }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
        for label in labels {
            guard (1...63).contains(label.utf8.count), label.allSatisfy(allowed.contains), label.first != "-", label.last != "-" else {
                return "'\(name)' is not a DNS name (labels of letters, digits and inner '-', 1 to 63 characters)"
            }
        }
        if labels.last!.allSatisfy(\.isNumber) { return "'\(name)' is not a DNS name (the last label is numeric)" }
        return nil
    }
}

/// Textual IP address parsing via `inet_pton`.
public enum IPAddress {
    public static func bytes(_ text: String) -> [UInt8]? {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, text, &v6) == 1 { return v6 }
        return nil
    }
}
