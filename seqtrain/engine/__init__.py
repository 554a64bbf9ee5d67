"""The machinery a run is built from: the one LightningModule, the network assembly, the Trainer's
parts (callbacks, optimizer, precision, compile, allocator, tracking, ranks). It never imports a
run or a door."""
