import Foundation
import MeridianCore

/// Column-aligned output in the style of kubectl. Cells may hold what a peer cluster exported
/// (node names, labels, keys), so every cell is escaped (`TerminalSafe`) and cut to
/// `maximumCellScalars` before it reaches a terminal.
public struct Table: Sendable {
    public var headers: [String]
    public var rows: [[String]]

    public static let maximumCellScalars = 256

    public init(headers: [String], rows: [[String]]) {
        self.headers = headers
        self.rows = rows.map { $0.map { TerminalSafe.escape($0, maxScalars: Self.maximumCellScalars) } }
    }

    public func render() -> String {
        var widths = headers.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0) }
                .joined().replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}
