"""What a cluster needs to pull from the mirror: node configuration for containerd and CRI-O, a rewrite map
for admission controllers, and a check of the images that workloads use (`dmi cluster-config`,
`dmi check-images`). Plain Python, read off config.ini (and for the check, the tracking history)."""
