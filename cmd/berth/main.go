// Command berth is the CLI and the daemon of the berth container engine.
package main

func main() {}
