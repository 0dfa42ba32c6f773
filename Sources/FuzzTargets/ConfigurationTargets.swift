// Fuzz targets: filled in by issue 13's next steps.
extension FuzzTarget {
    static let configurationTargets: [FuzzTarget] = []
}
