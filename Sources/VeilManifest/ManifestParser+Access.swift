import VeilCore
import X509

extension ManifestParser {
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
}
