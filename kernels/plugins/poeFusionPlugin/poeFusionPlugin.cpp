//! \file poeFusionPlugin.cpp
//! IPluginV3 glue of edgevae::poe_fusion; the kernel is edgevae_plugin_poe_fusion in
//! common/edgevaePluginKernels.cu. Every entry point is noexcept and catches everything:
//! exceptions must not cross the library boundary.
#include "poeFusionPlugin.h"

#include "edgevaePluginCommon.h"
#include "edgevaePluginKernels.h"

using namespace nvinfer1;

namespace edgevae
{
namespace plugin
{
namespace
{
constexpr int32_t kNB_INPUTS{3};
constexpr int32_t kNB_OUTPUTS{4};
} // namespace

PoeFusionPlugin::PoeFusionPlugin() noexcept
{
    mFieldsToSerialize.nbFields = 0;
    mFieldsToSerialize.fields = nullptr;
}

PoeFusionPlugin::PoeFusionPlugin(PoeFusionPlugin const& other) noexcept
    : PoeFusionPlugin()
{
    static_cast<void>(other);
}

IPluginCapability* PoeFusionPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* PoeFusionPlugin::clone() noexcept
{
    try
    {
        return new PoeFusionPlugin(*this);
    }
    catch (...)
    {
        logCurrentException("poe_fusion clone");
    }
    return nullptr;
}

char const* PoeFusionPlugin::getPluginName() const noexcept
{
    return kPOE_FUSION_NAME;
}

char const* PoeFusionPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* PoeFusionPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t PoeFusionPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t PoeFusionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    static_cast<void>(out);
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || in[0].desc.dims.nbDims != 3)
    {
        logError("poe_fusion: expects expert_mu, expert_logvar (B, M, D) and mask (B, M)");
        return -1;
    }
    int64_t const latent = in[0].desc.dims.d[2];
    if (latent > kPluginMaxLatent)
    {
        logError("poe_fusion: the latent size D is larger than the plugin supports (1024)");
        return -1;
    }
    return 0;
}

bool PoeFusionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    // Everything FP32, row-major: the fusion is FP32 by contract even in FP16/INT8 engines.
    return inOut[pos].desc.type == DataType::kFLOAT && inOut[pos].desc.format == PluginFormat::kLINEAR;
}

int32_t PoeFusionPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    static_cast<void>(inputTypes);
    static_cast<void>(nbInputs);
    for (int32_t i = 0; i < nbOutputs; ++i)
    {
        outputTypes[i] = DataType::kFLOAT;
    }
    return 0;
}

int32_t PoeFusionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
    int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    static_cast<void>(shapeInputs);
    static_cast<void>(nbShapeInputs);
    static_cast<void>(exprBuilder);
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || inputs[0].nbDims != 3 || inputs[2].nbDims != 2)
    {
        logError("poe_fusion: expects expert_mu, expert_logvar (B, M, D) and mask (B, M)");
        return -1;
    }
    auto const* batch = inputs[0].d[0];
    auto const* experts = inputs[0].d[1];
    auto const* latent = inputs[0].d[2];
    outputs[0].nbDims = 2; // z_mu (B, D)
    outputs[0].d[0] = batch;
    outputs[0].d[1] = latent;
    outputs[1] = outputs[0]; // z_logvar (B, D)
    outputs[2].nbDims = 1;   // kl_prior (B,)
    outputs[2].d[0] = batch;
    outputs[3].nbDims = 2; // cross_modal (B, M)
    outputs[3].d[0] = batch;
    outputs[3].d[1] = experts;
    return 0;
}

size_t PoeFusionPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    static_cast<void>(inputs);
    static_cast<void>(nbInputs);
    static_cast<void>(outputs);
    static_cast<void>(nbOutputs);
    return 0;
}

int32_t PoeFusionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    static_cast<void>(outputDesc);
    static_cast<void>(workspace);
    auto const& dims = inputDesc[0].dims;
    auto const batch = static_cast<int32_t>(dims.d[0]);
    auto const experts = static_cast<int32_t>(dims.d[1]);
    auto const latent = static_cast<int32_t>(dims.d[2]);
    cudaError_t const status = edgevaeLaunchPoeFusion(static_cast<float const*>(inputs[0]),
        static_cast<float const*>(inputs[1]), static_cast<float const*>(inputs[2]), batch, experts, latent,
        static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]), static_cast<float*>(outputs[2]),
        static_cast<float*>(outputs[3]), stream);
    if (status != cudaSuccess)
    {
        logError(cudaGetErrorString(status));
        return -1;
    }
    return 0;
}

int32_t PoeFusionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    static_cast<void>(in);
    static_cast<void>(out);
    return (nbInputs == kNB_INPUTS && nbOutputs == kNB_OUTPUTS) ? 0 : -1;
}

IPluginV3* PoeFusionPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    static_cast<void>(context);
    return clone();
}

PluginFieldCollection const* PoeFusionPlugin::getFieldsToSerialize() noexcept
{
    return &mFieldsToSerialize;
}

// ------------------------------------------------------------------------------------ creator

PoeFusionPluginCreator::PoeFusionPluginCreator() noexcept
{
    mFieldNames.nbFields = 0;
    mFieldNames.fields = nullptr;
}

char const* PoeFusionPluginCreator::getPluginName() const noexcept
{
    return kPOE_FUSION_NAME;
}

char const* PoeFusionPluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* PoeFusionPluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

PluginFieldCollection const* PoeFusionPluginCreator::getFieldNames() noexcept
{
    return &mFieldNames;
}

IPluginV3* PoeFusionPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    static_cast<void>(name);
    static_cast<void>(fc);
    static_cast<void>(phase);
    try
    {
        return new PoeFusionPlugin();
    }
    catch (...)
    {
        logCurrentException("poe_fusion createPlugin");
    }
    return nullptr;
}

} // namespace plugin
} // namespace edgevae
