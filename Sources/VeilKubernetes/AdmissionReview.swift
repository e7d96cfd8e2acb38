import FoundationEssentials
import VeilAttestation
import VeilCore

/// `admission.k8s.io/v1` AdmissionReview: the request the API server sends a mutating webhook
/// and the response it expects. Only what the injector reads is modelled; the wire shape
/// stays at this edge.
public enum AdmissionReview {
    public struct Request: Sendable {
        public var uid: String
        public var namespace: String
        public var kind: String
        public var operation: String
        public var object: JSONValue
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notJSON(String)
        case notAnAdmissionReview(String)

        public var description: String {
            switch self {
            case .notJSON(let reason): return "the body is not JSON: \(reason)"
            case .notAnAdmissionReview(let reason): return "not an admission.k8s.io/v1 AdmissionReview: \(reason)"
            }
        }
    }

    public static func parse(_ body: [UInt8]) throws(ParseError) -> Request {
        let review: JSONValue
        do {
            review = try JSONValue.parse(body)
        } catch {
            throw .notJSON(error.description)
        }
        guard review["apiVersion"]?.stringValue == "admission.k8s.io/v1", review["kind"]?.stringValue == "AdmissionReview" else {
            throw .notAnAdmissionReview("apiVersion must be admission.k8s.io/v1 and kind AdmissionReview")
        }
        guard let request = review["request"], let uid = request["uid"]?.stringValue, !uid.isEmpty else {
            throw .notAnAdmissionReview("request.uid is missing")
        }
        guard let object = request["object"], object.objectValue != nil else { throw .notAnAdmissionReview("request.object is missing") }
        // The request's namespace is authoritative (a pod's metadata may omit it on create).
        let namespace = request["namespace"]?.stringValue ?? object["metadata"]?["namespace"]?.stringValue ?? "default"
        return Request(
            uid: uid, namespace: namespace, kind: request["kind"]?["kind"]?.stringValue ?? "", operation: request["operation"]?.stringValue ?? "",
            object: object)
    }

    /// The response for `decision`. Anything but a pod is admitted untouched.
    public static func response(uid: String, decision: PodDecision) throws -> [UInt8] {
        var response: [String: JSONValue] = ["uid": .string(uid)]
        switch decision {
        case .unchanged:
            response["allowed"] = .bool(true)
        case .patch(let operations):
            response["allowed"] = .bool(true)
            response["patchType"] = .string("JSONPatch")
            response["patch"] = .string(Data(try JSONValue.array(operations).serialized()).base64EncodedString())
        case .denied(let message):
            response["allowed"] = .bool(false)
            response["status"] = .object(["code": .number(403), "reason": .string("Forbidden"), "message": .string("veil injector: " + message)])
        }
        return try JSONValue.object([
            "apiVersion": .string("admission.k8s.io/v1"), "kind": .string("AdmissionReview"), "response": .object(response),
        ]).serialized()
    }

    /// The decision for a review: pods are decided by `mutator`, other kinds pass.
    public static func decide(_ request: Request, mutator: PodMutator) -> PodDecision {
        guard request.kind == "Pod", request.operation == "CREATE" || request.operation.isEmpty else { return .unchanged }
        return mutator.decide(pod: request.object, namespace: request.namespace)
    }
}
