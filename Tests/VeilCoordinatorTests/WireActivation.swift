import Foundation
import VeilAPI
import VeilCoordinator
import VeilManifest

extension Coordinator {
    /// An activation as the HTTP route performs it: the wire request mapped to the core's
    /// attempt, the core's activation mapped back to the wire response.
    func activate(_ request: API.ActivationRequest, now: Date = Date()) async throws(CoordinatorError) -> API.ActivationResponse {
        API.ActivationResponse(try await activate(ActivationAttempt(request), now: now))
    }
}
