import Foundation
import VeilAPI
import VeilCoordinator
import VeilManifest

/// The core's answers as the HTTP routes send them: the wire request mapped to the core's
/// values and the answer mapped back, through the same mappings (HTTP/WireMapping.swift).
extension Coordinator {
    func activate(_ request: API.ActivationRequest, now: Date = Date()) async throws(CoordinatorError) -> API.ActivationResponse {
        API.ActivationResponse(try await activate(ActivationAttempt(request), now: now))
    }

    func attestation(nonce: [UInt8]) throws(CoordinatorError) -> API.AttestationResponse {
        API.AttestationResponse(try evidence(nonce: nonce))
    }

    func readSecrets(_ names: [String], by user: AuthenticatedUser) throws(CoordinatorError) -> [String: API.SecretContent] {
        try secrets(names, by: user).mapValues(API.SecretContent.init)
    }
}
