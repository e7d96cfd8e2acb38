import Crypto

/// What a user may do. Each action applies to one resource type.
public enum Action: String, Sendable, CaseIterable {
    case readSecret = "ReadSecret"
    case writeSecret = "WriteSecret"
    case updatePackage = "UpdatePackage"
    case updateManifest = "UpdateManifest"
    case recover = "Recover"

    public var resourceType: ResourceType {
        switch self {
        case .readSecret, .writeSecret: return .secrets
        case .updatePackage: return .packages
        case .updateManifest, .recover: return .manifest
        }
    }
}

public enum ResourceType: String, Sendable, CaseIterable {
    case secrets = "Secrets"
    case packages = "Packages"
    /// The manifest as a whole (no resource names).
    case manifest = "Manifest"
}

/// A person or system managing the coordinator, identified by the X.509 certificate its HTTPS
/// client presents (matched byte for byte; the TLS handshake proves the private key).
public struct User: Sendable, Equatable {
    public var certificateDER: [UInt8]
    public var roles: [String]
}

/// A set of actions on named resources of one type.
public struct Role: Sendable, Equatable {
    public var resourceType: ResourceType
    /// Secrets or packages the role covers; empty for ``ResourceType/manifest``.
    public var resourceNames: Set<String>
    public var actions: Set<Action>
}

extension Manifest {
    /// Whether some user may replace this manifest (`veil manifest update`).
    public var updatable: Bool { users.values.contains { allows($0, .updateManifest, on: nil) } }

    /// The user whose certificate is exactly `der`, if any.
    public func user(certificateDER der: [UInt8]) -> (name: String, user: User)? {
        users.first { $0.value.certificateDER == der }.map { ($0.key, $0.value) }
    }

    /// Whether `user` may perform `action` on `resource` (nil for manifest-wide actions).
    public func allows(_ user: User, _ action: Action, on resource: String?) -> Bool {
        user.roles.contains { name in
            guard let role = roles[name], role.actions.contains(action), role.resourceType == action.resourceType else { return false }
            return role.resourceType == .manifest || resource.map(role.resourceNames.contains) == true
        }
    }
}
