import GRPCCore
@testable import MeridianEtcd
import Testing

/// How transport failures read to callers that retry on `unavailable`.
@Suite("etcd errors")
struct EtcdErrorTranslationTests {
    @Test("an answer broken off by a member going away is unavailable (retried elsewhere); other internal errors are not")
    func brokenOffAnswersAreUnavailable() {
        for message in ["Missing content-type header",
                        "Server sent EOS alongside a data frame, but server is only allowed to close by sending status and trailers."] {
            let error = EtcdClient.translate(RPCError(code: .internalError, message: message), context: "put k")
            #expect(error.code == .unavailable, "\(message)")
        }
        #expect(EtcdClient.translate(RPCError(code: .internalError, message: "Failed to decode message"), context: "put k").code == .other)
        #expect(EtcdClient.translate(RPCError(code: .unavailable, message: "Stream unexpectedly closed."), context: "put k").code == .unavailable)
    }
}
