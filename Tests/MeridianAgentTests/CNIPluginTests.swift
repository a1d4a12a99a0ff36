import Foundation
import MeridianDatapath
import Testing
@testable import MeridianAgent

@Suite("CNI plugin arguments")
struct CNIArgumentTests {
    @Test("CNI_ARGS pairs are parsed; malformed pairs are skipped")
    func arguments() {
        let parsed = CNIPlugin.parseArguments("IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-1;broken;K8S_POD_INFRA_CONTAINER_ID=abc")
        #expect(parsed["K8S_POD_NAMESPACE"] == "prod")
        #expect(parsed["K8S_POD_NAME"] == "web-1")
        #expect(parsed["broken"] == nil)
        #expect(parsed.count == 4)
    }

    @Test("VERSION answers without touching the agent; a bad configuration is a CNI error on stdout with exit 1")
    func versionAndErrors() throws {
        let version = CNIPlugin.run(environment: ["CNI_COMMAND": "VERSION"], stdin: Data("{\"cniVersion\":\"1.0.0\",\"name\":\"m\",\"agentSocket\":\"/nonexistent\"}".utf8))
        #expect(version.status == 0 && version.output.contains("supportedVersions"))
        let bad = CNIPlugin.run(environment: ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "x", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"], stdin: Data("not json".utf8))
        #expect(bad.status == 1)
        let error = try #require(try JSONSerialization.jsonObject(with: Data(bad.output.utf8)) as? [String: Any])
        #expect(error["code"] as? Int == 6)
        let unreachable = CNIPlugin.run(environment: ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "x", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"],
                                        stdin: Data("{\"cniVersion\":\"1.0.0\",\"name\":\"m\",\"agentSocket\":\"/nonexistent/agent.sock\"}".utf8))
        #expect(unreachable.status == 1 && unreachable.output.contains("agent unreachable"))
        let missing = CNIPlugin.run(environment: ["CNI_COMMAND": "ADD"], stdin: Data("{\"cniVersion\":\"1.0.0\",\"name\":\"m\",\"agentSocket\":\"/x\"}".utf8))
        #expect(missing.status == 1 && missing.output.contains("CNI_CONTAINERID"))
    }

    @Test("host interface names fit the kernel's 15 characters and are stable per container")
    func hostInterfaceNames() {
        let name = PodInterface.hostInterfaceName(containerID: "3ff72c9d55c54c39bbe04bf63cbecd95")
        #expect(name.count <= 15 && name.hasPrefix("mer"))
        #expect(name == PodInterface.hostInterfaceName(containerID: "3ff72c9d55c54c39bbe04bf63cbecd95"))
        #expect(name != PodInterface.hostInterfaceName(containerID: "another"))
    }
}
