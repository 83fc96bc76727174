// Precompiled header for LibTorch translation units (a compile-time speed-up only; every file
// still includes what it uses).
#pragma once
#include <torch/torch.h>
