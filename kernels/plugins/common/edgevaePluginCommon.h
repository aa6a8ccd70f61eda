//! \file edgevaePluginCommon.h
//! Shared pieces of the edgevae IPluginV3 plugins: names, the logger handed over by TensorRT,
//! and the helpers that keep exceptions from crossing the library boundary.
//! Style: NVIDIA/TensorRT CODING-GUIDELINES.md (camelCase files, mMember, kCONSTANT, //! docs).
#pragma once

#include "NvInferRuntime.h"
#include "NvInferVersion.h"

#include <cstdint>

static_assert(NV_TENSORRT_MAJOR >= 10, "edgevae plugins are IPluginV3: TensorRT >= 10.0 is required");
#include <exception>

namespace edgevae
{
namespace plugin
{

//! Plugin namespace and version: the ONNX nodes carry plugin_namespace="edgevae" and
//! plugin_version="1" (edgevae/trt/plugin_graph.py); op types are the plugin names.
constexpr char const* kPLUGIN_NAMESPACE{"edgevae"};
constexpr char const* kPLUGIN_VERSION{"1"};
constexpr char const* kPOE_FUSION_NAME{"poe_fusion"};
constexpr char const* kANOMALY_SCORE_NAME{"anomaly_score"};

//! The logger TensorRT hands over through setLoggerFinder() (may be null before that).
nvinfer1::ILogger* getLogger() noexcept;

//! Remember the logger finder (called by TensorRT when it loads the library).
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! Log an error through TensorRT's logger; never throws.
void logError(char const* message) noexcept;

//! Log the message of the exception being handled (call inside a catch block); never throws.
void logCurrentException(char const* where) noexcept;

} // namespace plugin
} // namespace edgevae
