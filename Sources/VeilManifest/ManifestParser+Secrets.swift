import VeilCore

extension ManifestParser {
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
