//! \file anomalyScorePlugin.cpp
//! IPluginV3 glue of edgevae::anomaly_score; the kernel is edgevae_plugin_anomaly_score in
//! common/edgevaePluginKernels.cu. Every entry point is noexcept and catches everything.
#include "anomalyScorePlugin.h"

#include "edgevaePluginCommon.h"
#include "edgevaePluginKernels.h"

using namespace nvinfer1;

namespace edgevae
{
namespace plugin
{
namespace
{
constexpr int32_t kNB_INPUTS{9};
constexpr int32_t kNB_OUTPUTS{2};
constexpr int32_t kOFFSETS_INPUT{5}; //!< the only INT32 input
} // namespace

AnomalyScorePlugin::AnomalyScorePlugin() noexcept
{
    mFieldsToSerialize.nbFields = 0;
    mFieldsToSerialize.fields = nullptr;
}

AnomalyScorePlugin::AnomalyScorePlugin(AnomalyScorePlugin const& other) noexcept
    : AnomalyScorePlugin()
{
    static_cast<void>(other);
}

IPluginCapability* AnomalyScorePlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* AnomalyScorePlugin::clone() noexcept
{
    try
    {
        return new AnomalyScorePlugin(*this);
    }
    catch (...)
    {
        logCurrentException("anomaly_score clone");
    }
    return nullptr;
}

char const* AnomalyScorePlugin::getPluginName() const noexcept
{
    return kANOMALY_SCORE_NAME;
}

char const* AnomalyScorePlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* AnomalyScorePlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t AnomalyScorePlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t AnomalyScorePlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    static_cast<void>(out);
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || in[0].desc.dims.nbDims != 2
        || in[2].desc.dims.nbDims != 2)
    {
        logError("anomaly_score: expects x_cat, recon_cat (B, N), mask (B, M), kl_prior, cross_modal, "
                 "offsets, mean, std, weight");
        return -1;
    }
    return 0;
}

bool AnomalyScorePlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (pos < 0 || pos >= nbInputs + nbOutputs || inOut[pos].desc.format != PluginFormat::kLINEAR)
    {
        return false;
    }
    DataType const want = pos == kOFFSETS_INPUT ? DataType::kINT32 : DataType::kFLOAT;
    return inOut[pos].desc.type == want;
}

int32_t AnomalyScorePlugin::getOutputDataTypes(
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

int32_t AnomalyScorePlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* shapeInputs,
    int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    static_cast<void>(shapeInputs);
    static_cast<void>(nbShapeInputs);
    if (nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || inputs[2].nbDims != 2)
    {
        logError("anomaly_score: expects 9 inputs with mask (B, M)");
        return -1;
    }
    auto const* batch = inputs[2].d[0];
    auto const* modalities = inputs[2].d[1];
    outputs[0].nbDims = 1; // score (B,)
    outputs[0].d[0] = batch;
    outputs[1].nbDims = 2; // score_parts (B, M + 2)
    outputs[1].d[0] = batch;
    outputs[1].d[1] = exprBuilder.operation(DimensionOperation::kSUM, *modalities, *exprBuilder.constant(2));
    return 0;
}

size_t AnomalyScorePlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    static_cast<void>(inputs);
    static_cast<void>(nbInputs);
    static_cast<void>(outputs);
    static_cast<void>(nbOutputs);
    return 0;
}

int32_t AnomalyScorePlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    static_cast<void>(outputDesc);
    static_cast<void>(workspace);
    auto const batch = static_cast<int32_t>(inputDesc[0].dims.d[0]);
    auto const columns = static_cast<int32_t>(inputDesc[0].dims.d[1]);
    auto const modalities = static_cast<int32_t>(inputDesc[2].dims.d[1]);
    auto f = [inputs](int32_t i) { return static_cast<float const*>(inputs[i]); };
    cudaError_t const status = edgevaeLaunchAnomalyScore(f(0), f(1), f(2), f(3), f(4),
        static_cast<int32_t const*>(inputs[kOFFSETS_INPUT]), f(6), f(7), f(8), batch, modalities, columns,
        static_cast<float*>(outputs[0]), static_cast<float*>(outputs[1]), stream);
    if (status != cudaSuccess)
    {
        logError(cudaGetErrorString(status));
        return -1;
    }
    return 0;
}

int32_t AnomalyScorePlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    static_cast<void>(in);
    static_cast<void>(out);
    return (nbInputs == kNB_INPUTS && nbOutputs == kNB_OUTPUTS) ? 0 : -1;
}

IPluginV3* AnomalyScorePlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    static_cast<void>(context);
    return clone();
}

PluginFieldCollection const* AnomalyScorePlugin::getFieldsToSerialize() noexcept
{
    return &mFieldsToSerialize;
}

// ------------------------------------------------------------------------------------ creator

AnomalyScorePluginCreator::AnomalyScorePluginCreator() noexcept
{
    mFieldNames.nbFields = 0;
    mFieldNames.fields = nullptr;
}

char const* AnomalyScorePluginCreator::getPluginName() const noexcept
{
    return kANOMALY_SCORE_NAME;
}

char const* AnomalyScorePluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* AnomalyScorePluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

PluginFieldCollection const* AnomalyScorePluginCreator::getFieldNames() noexcept
{
    return &mFieldNames;
}

IPluginV3* AnomalyScorePluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    static_cast<void>(name);
    static_cast<void>(fc);
    static_cast<void>(phase);
    try
    {
        return new AnomalyScorePlugin();
    }
    catch (...)
    {
        logCurrentException("anomaly_score createPlugin");
    }
    return nullptr;
}

} // namespace plugin
} // namespace edgevae
