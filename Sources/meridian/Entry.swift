import ArgumentParser
import MeridianCLI

@main
extension Meridian {}
