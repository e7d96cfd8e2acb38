import VeilCore

extension ManifestParser {
    mutating func service(
        _ value: JSONValue, _ path: String, packageNames: Set<String>, secrets: [String: SecretSpec], secretNames: Set<String>,
        serviceNames: Set<String>
    ) -> Manifest.Service? {
        guard let fields = object(value, path, allowed: ["Package", "MaxActivations", "Parameters", "ProtectedFilesKey", "AllowDiskFiles", "Mesh", "KBS", "TransitKeys", "CertificateLifetime", "Reload", "WorkloadAPISocket"]) else { return nil }
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
        let kbs = fields["KBS"].map { kbsAccess($0, "\(path).KBS", secrets: secrets, secretNames: secretNames) } ?? nil
        let transitKeys = stringArray(fields["TransitKeys"], "\(path).TransitKeys")
        for (index, name) in transitKeys.enumerated() where !Manifest.isTransitKeyName(name) {
            problem("\(path).TransitKeys[\(index)]", "a transit key name is 1-64 letters, digits, '.', '_' or '-' (not '.' or '..'), not '\(name)'")
        }
        let lifetime = string(fields["CertificateLifetime"], "\(path).CertificateLifetime").flatMap { text in
            let parsed = CertificateLifetime(text)
            if parsed == nil { problem("\(path).CertificateLifetime", CertificateLifetime.rule(text)) }
            return parsed
        }
        let reload = string(fields["Reload"], "\(path).Reload").flatMap { text in
            let parsed = ReloadSignal(rawValue: text)
            if parsed == nil { problem("\(path).Reload", "'\(text)' is not one of \(ReloadSignal.allCases.map(\.rawValue).joined(separator: ", "))") }
            return parsed
        }
        if reload != nil && lifetime == nil && fields["CertificateLifetime"] == nil {
            problem("\(path).Reload", "needs a CertificateLifetime: only the renewing agent sends it")
        }
        let socket = string(fields["WorkloadAPISocket"], "\(path).WorkloadAPISocket")
        if let socket {
            if let rule = FilePathRule.problem(socket) { problem("\(path).WorkloadAPISocket", rule) }
            if socket.utf8.count > 107 { problem("\(path).WorkloadAPISocket", "a Unix socket path is at most 107 bytes") }
            if fields["CertificateLifetime"] == nil { problem("\(path).WorkloadAPISocket", "needs a CertificateLifetime: the renewing agent serves it") }
        }
        guard problems.count == before, let package else { return nil }
        return Manifest.Service(
            package: package, maxActivations: maxActivations, parameters: parameters, protectedFilesKey: protectedFilesKey,
            allowDiskFiles: bool(fields["AllowDiskFiles"], "\(path).AllowDiskFiles") ?? false, mesh: mesh, kbs: kbs, transitKeys: transitKeys,
            certificateLifetime: lifetime, reload: reload, workloadAPISocket: socket)
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

    mutating func stringArray(_ value: JSONValue?, _ path: String) -> [String] {
        guard let value else { return [] }
        guard case .array(let items) = value else {
            problem(path, "must be an array of strings, found \(value.typeName)")
            return []
        }
        return items.enumerated().compactMap { string($1, "\(path)[\($0)]") }
    }

    mutating func arrayItems(_ value: JSONValue?, _ path: String) -> [JSONValue] {
        guard let value else { return [] }
        guard case .array(let items) = value else {
            problem(path, "must be an array, found \(value.typeName)")
            return []
        }
        return items
    }
}

extension Manifest {
    /// Whether `name` can name a transit key (one URL path segment).
    public static func isTransitKeyName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), name != ".", name != ".." else { return false }
        return name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || Array("._-".utf8).contains(byte)
        }
    }

    /// The services that may use transit key `name`.
    public func transitUsers(of name: String) -> [String] {
        services.filter { $0.value.transitKeys.contains(name) }.map(\.key).sorted()
    }
}
