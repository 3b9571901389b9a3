//go:build race

package main

// raceBuild: the race detector slows the stack about tenfold.
const raceBuild = true
