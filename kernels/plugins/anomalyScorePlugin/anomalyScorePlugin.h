//! \file anomalyScorePlugin.h
//! edgevae::anomaly_score as an IPluginV3 (TensorRT >= 10.0; the route for JetPack 6 / TRT 10.3).
//!
//! Inputs : x_cat, recon_cat (B, N)  the modalities' flattened samples side by side
//!          mask (B, M), kl_prior (B,), cross_modal (B, M)
//!          offsets (M + 1,) INT32    modality m is columns [offsets[m], offsets[m + 1])
//!          mean, std, weight (M + 2,) standardisation statistics of normal validation data
//! Outputs: score (B,), score_parts (B, M + 2)          all FP32 except offsets, linear
//! Math   : per-modality MSE (0 when missing), standardised parts, weighted sum (DESIGN §4).
#pragma once

#include "NvInferRuntime.h"

namespace edgevae
{
namespace plugin
{

class AnomalyScorePlugin : public nvinfer1::IPluginV3,
                           public nvinfer1::IPluginV3OneCore,
                           public nvinfer1::IPluginV3OneBuild,
                           public nvinfer1::IPluginV3OneRuntime
{
public:
    AnomalyScorePlugin() noexcept;
    AnomalyScorePlugin(AnomalyScorePlugin const& other) noexcept;
    ~AnomalyScorePlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    nvinfer1::PluginFieldCollection mFieldsToSerialize{}; //!< empty: statistics are inputs
};

class AnomalyScorePluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    AnomalyScorePluginCreator() noexcept;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    nvinfer1::PluginFieldCollection mFieldNames{};
};

} // namespace plugin
} // namespace edgevae
