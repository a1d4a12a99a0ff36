import Foundation
import MeridianCore
import MeridianDatapath
import MeridianHost

/// The CNI plugin (`meridian cni`), speaking the CNI 1.0 protocol: the command and container
/// in `CNI_*` environment variables, the network configuration as JSON on stdin, the result
/// or an error object as JSON on stdout. ADD builds the pod's veth with an address the agent
/// hands out and gives the endpoint to the agent; DEL undoes it and is idempotent; CHECK
/// verifies both halves.
public enum CNIPlugin {
    public static let supportedVersions = ["0.4.0", "1.0.0", "1.1.0"]

    /// Runs one invocation; returns the exit status and what to print on stdout.
    public static func run(environment: [String: String], stdin: Data) -> (status: Int32, output: String) {
        let version = (try? JSONDecoder().decode(NetworkConfiguration.self, from: stdin))?.cniVersion ?? "1.0.0"
        do {
            let command = try required("CNI_COMMAND", environment)
            if command == "VERSION" {
                return (0, encode(["cniVersion": version, "supportedVersions": supportedVersions] as [String: any Sendable]))
            }
            let config: NetworkConfiguration
            do {
                config = try JSONDecoder().decode(NetworkConfiguration.self, from: stdin)
            } catch {
                throw CNIError(code: 6, message: "invalid network configuration on stdin", details: "\(error)")
            }
            guard supportedVersions.contains(config.cniVersion) else {
                throw CNIError(code: 1, message: "incompatible CNI version \(config.cniVersion)", details: "supported: \(supportedVersions.joined(separator: ", "))")
            }
            let containerID = try required("CNI_CONTAINERID", environment)
            let arguments = parseArguments(environment["CNI_ARGS"] ?? "")
            let namespace = arguments["K8S_POD_NAMESPACE"] ?? "default"
            let pod = arguments["K8S_POD_NAME"] ?? containerID
            switch command {
            case "ADD":
                let netnsPath = try required("CNI_NETNS", environment)
                let ifname = try required("CNI_IFNAME", environment)
                let result = try add(config: config, containerID: containerID, netnsPath: netnsPath, ifname: ifname,
                                           namespace: namespace, pod: pod)
                return (0, result)
            case "DEL":
                // The link goes either way; the agent must be told, or the runtime retries.
                PodNetwork.remove(containerID: containerID)
                let response = try send(.deleteEndpoint(containerID: containerID), config)
                if let error = response.error { throw CNIError(code: 11, message: "endpoint removal failed", details: error) }
                return (0, "")
            case "CHECK":
                let response = try send(.checkEndpoint(containerID: containerID), config)
                if let error = response.error { throw CNIError(code: 11, message: "endpoint check failed", details: error) }
                let host = PodInterface.hostInterfaceName(containerID: containerID)
                guard (try? HostCommand.runSync(["ip", "link", "show", "dev", host])) != nil else {
                    throw CNIError(code: 11, message: "host interface \(host) is missing", details: "container \(containerID)")
                }
                return (0, "")
            default:
                throw CNIError(code: 4, message: "unknown CNI_COMMAND \(command)", details: "expected ADD, DEL, CHECK or VERSION")
            }
        } catch let error as CNIError {
            return (1, encode(["cniVersion": version, "code": error.code, "msg": error.message, "details": error.details] as [String: any Sendable]))
        } catch {
            return (1, encode(["cniVersion": version, "code": 999, "msg": "\(error)", "details": ""] as [String: any Sendable]))
        }
    }

    private static func add(config: NetworkConfiguration, containerID: String, netnsPath: String, ifname: String,
                            namespace: String, pod: String) throws -> String {
        let netns = (netnsPath as NSString).lastPathComponent
        let allocation = try send(.allocateAddress(containerID: containerID, namespace: namespace, pod: pod), config)
        if let error = allocation.error { throw CNIError(code: 11, message: "address allocation failed", details: error) }
        guard let addressText = allocation.address, let address = IPAddress(addressText),
              let gatewayText = allocation.gateway, let gateway = IPAddress(gatewayText), let mtu = allocation.mtu else {
            throw CNIError(code: 11, message: "the agent returned no address", details: "container \(containerID)")
        }
        let interface: PodInterface
        do {
            interface = try PodNetwork.create(containerID: containerID, networkNamespace: netns, podInterface: ifname,
                                                    address: address, gateway: gateway, mtu: mtu)
        } catch {
            _ = try? send(.deleteEndpoint(containerID: containerID), config)
            throw CNIError(code: 11, message: "could not set up the pod interface", details: "\(error)")
        }
        let spec = EndpointSpec(containerID: containerID, namespace: namespace, pod: pod, interface: PodInterfaceDescription(
            hostInterface: interface.hostInterface, networkNamespace: netns, address: address.description,
            hostMAC: interface.hostMAC, podMAC: interface.podMAC))
        let created = try send(.createEndpoint(spec), config)
        if let error = created.error {
            _ = try? send(.deleteEndpoint(containerID: containerID), config)
            PodNetwork.remove(containerID: containerID)
            throw CNIError(code: 11, message: "the agent could not create the endpoint", details: error)
        }
        let result: [String: any Sendable] = [
            "cniVersion": config.cniVersion,
            "interfaces": [
                ["name": interface.hostInterface, "mac": mac(interface.hostMAC)],
                ["name": ifname, "mac": mac(interface.podMAC), "sandbox": netnsPath],
            ],
            "ips": [["address": "\(address)/32", "gateway": gateway.description, "interface": 1] as [String: any Sendable]],
            "routes": [["dst": "0.0.0.0/0", "gw": gateway.description]],
            "dns": ["nameservers": [allocation.dnsServer ?? gateway.description], "search": allocation.dnsSearch ?? []] as [String: any Sendable],
            "identity": Int(created.identity ?? 0),
        ]
        return encode(result)
    }

    private static func send(_ request: AgentRequest, _ config: NetworkConfiguration) throws -> AgentResponse {
        do {
            return try AgentAPIClient.send(request, socketPath: config.agentSocket)
        } catch {
            throw CNIError(code: 11, message: "agent unreachable", details: error.message)
        }
    }

    private static func required(_ name: String, _ environment: [String: String]) throws -> String {
        guard let value = environment[name], !value.isEmpty else {
            throw CNIError(code: 4, message: "missing environment variable \(name)", details: "the runtime must set \(name)")
        }
        return value
    }

    /// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
    static func parseArguments(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: ";") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }

    static func mac(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined(separator: ":")
    }

    private static func encode(_ object: [String: any Sendable]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    struct NetworkConfiguration: Decodable {
        var cniVersion: String
        var name: String
        var type: String?
        var agentSocket: String
    }

    struct CNIError: Error {
        var code: Int
        var message: String
        var details: String
    }
}
