import VeilCore

extension ManifestParser {
    /// `{"Resources": {"REPO/TYPE/TAG": TEMPLATE}, "InitDataDigest": HEX}`.
    mutating func kbsAccess(_ value: JSONValue, _ path: String, secrets: [String: SecretSpec], secretNames: Set<String>) -> KBSAccess? {
        guard let fields = object(value, path, allowed: ["Resources", "InitDataDigest"]) else { return nil }
        let before = problems.count
        var resources: [String: Template] = [:]
        for (resource, item) in map(fields["Resources"], "\(path).Resources") {
            let itemPath = "\(path).Resources[\"\(resource)\"]"
            if let problem = KBSAccess.resourcePathProblem(resource) { self.problem(itemPath, problem) }
            guard let template = template(item, itemPath, secrets: secrets, secretNames: secretNames) else { continue }
            // A KBS client has no Veil certificate: only the manifest's secrets and CA certificates exist for it.
            let serviceParts = template.references.map(\.reference) + template.keyStores.map(\.reference)
            if serviceParts.contains(where: { $0 == .serviceCert || $0 == .servicePrivateKey }) {
                problem(itemPath, "a KBS resource cannot use .Veil.Service.*: KBS clients get no Veil certificate")
                continue
            }
            if !template.keyStores.isEmpty {
                problem(itemPath, "a KBS resource cannot be a PKCS#12 key store")
                continue
            }
            resources[resource] = template
        }
        var digest: [UInt8]?
        if let text = string(fields["InitDataDigest"], "\(path).InitDataDigest") {
            digest = Hex.decode(text)
            if digest.map({ [32, 48, 64].contains($0.count) }) != true {
                problem("\(path).InitDataDigest", "must be the hex SHA-256, SHA-384 or SHA-512 digest of the init-data TOML")
            }
        }
        guard problems.count == before else { return nil }
        return KBSAccess(resources: resources, initDataDigest: digest)
    }

    /// Each package serves at most one KBS service: a KBS client names no service, so its
    /// evidence must select exactly one.
    /// A package that pins a container image measurement may serve KBS clients: Veil's own
    /// (`veil run` in a confidential VM) name the image in the runtime data the report binds;
    /// other attesters name none and do not match it.
    mutating func checkKBSPackages(_ services: [String: Manifest.Service], packages: [String: Package]) {
        var byPackage: [String: String] = [:]
        for name in services.keys.sorted() {
            guard let service = services[name], service.kbs != nil else { continue }
            if let other = byPackage[service.package] {
                problem("$.Services.\(name).KBS", "package '\(service.package)' already serves KBS clients as service '\(other)': a KBS client names no service, so its package must select one")
            }
            byPackage[service.package] = name
        }
    }
}
