//! \file edgevaePlugins.cpp
//! Library entry points of libedgevae_plugins.so, the dynamic-plugin interface TensorRT uses in
//! IPluginRegistry::loadLibrary (Python: trt.get_plugin_registry().load_library(path); trtexec:
//! --dynamicPlugins=path):
//!   extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder*)
//!   extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
//! The creators are NOT also self-registered at load time: TensorRT registers what getCreators
//! returns, and registering twice would fail.
#include "anomalyScorePlugin.h"
#include "edgevaePluginCommon.h"
#include "poeFusionPlugin.h"

#include <atomic>
#include <exception>

namespace edgevae
{
namespace plugin
{
namespace
{
std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};
} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    gLoggerFinder.store(finder);
}

nvinfer1::ILogger* getLogger() noexcept
{
    auto* finder = gLoggerFinder.load();
    return finder != nullptr ? finder->findLogger() : nullptr;
}

void logError(char const* message) noexcept
{
    auto* logger = getLogger();
    if (logger != nullptr && message != nullptr)
    {
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    }
}

void logCurrentException(char const* where) noexcept
{
    try
    {
        throw;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    catch (...)
    {
        logError(where);
    }
}

} // namespace plugin
} // namespace edgevae

extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    edgevae::plugin::setLoggerFinder(finder);
}

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static edgevae::plugin::PoeFusionPluginCreator sPoeFusionCreator{};
    static edgevae::plugin::AnomalyScorePluginCreator sAnomalyScoreCreator{};
    static nvinfer1::IPluginCreatorInterface* const sCreators[] = {&sPoeFusionCreator, &sAnomalyScoreCreator};
    nbCreators = 2;
    return sCreators;
}
