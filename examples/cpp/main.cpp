//! \file main.cpp
//! edgevae_infer: load an edgevae TensorRT engine and run one batch, the way an on-device C++ app
//! would. Two kinds of artifacts from `edgevae build`:
//!
//!   analyze.<precision>.plugin.plan / analyze.<precision>.plan   one engine; the fusion and the
//!       scoring run inside it (plugin mode: as plugins; native: as plain layers)
//!   analyze.<precision>.split.json   two engines (encode, decode) with the edgevae kernels
//!       between them: encode -> poe_fusion -> decode -> anomaly_score, all on one stream
//!
//! Usage:
//!   edgevae_infer ENGINE.plan|BUNDLE.split.json [--batch N] [--iterations N]
//!                 [--plugins libedgevae_plugins.so]
//! Inputs are deterministic pseudo-random values with every modality present (mask = 1); the app
//! prints each output's shape and a checksum, and the mean latency of --iterations runs.
#include "NvInferRuntime.h"
#include "miniJson.h"
#include "splitKernels.h"

#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

#define CHECK_CUDA(call)                                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        cudaError_t const status_ = (call);                                                                            \
        if (status_ != cudaSuccess)                                                                                    \
        {                                                                                                              \
            throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(status_));                         \
        }                                                                                                              \
    } while (0)

class Logger : public ILogger
{
public:
    void log(Severity severity, char const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            std::cerr << "[TensorRT] " << msg << "\n";
        }
    }
};

std::vector<char> readFile(std::string const& path)
{
    std::ifstream file(path, std::ios::binary);
    if (!file)
    {
        throw std::runtime_error("cannot open " + path);
    }
    return std::vector<char>((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
}

std::string directoryOf(std::string const& path)
{
    auto const slash = path.find_last_of('/');
    return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

int64_t volume(Dims const& d)
{
    int64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        v *= d.d[i];
    }
    return v;
}

std::string shapeString(Dims const& d)
{
    std::ostringstream s;
    s << "(";
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        s << (i ? ", " : "") << d.d[i];
    }
    s << ")";
    return s.str();
}

//! One engine with an execution context and a device buffer per I/O tensor (FP32 I/O, as edgevae
//! exports keep their inputs and outputs FP32).
struct Engine
{
    std::unique_ptr<ICudaEngine> engine;
    std::unique_ptr<IExecutionContext> context;
    std::map<std::string, void*> buffers;
    std::map<std::string, Dims> shapes;
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;

    Engine(IRuntime& runtime, std::string const& path, int32_t batch,
        std::map<std::string, void*> const& external = {})
    {
        auto const plan = readFile(path);
        engine.reset(runtime.deserializeCudaEngine(plan.data(), plan.size()));
        if (!engine)
        {
            throw std::runtime_error("cannot deserialize " + path + " (built for another TensorRT or GPU?)");
        }
        context.reset(engine->createExecutionContext());
        for (int32_t i = 0; i < engine->getNbIOTensors(); ++i)
        {
            std::string const name = engine->getIOTensorName(i);
            if (engine->getTensorDataType(name.c_str()) != DataType::kFLOAT)
            {
                throw std::runtime_error("tensor " + name + " is not FP32");
            }
            (engine->getTensorIOMode(name.c_str()) == TensorIOMode::kINPUT ? inputs : outputs).push_back(name);
        }
        for (auto const& name : inputs) // leading dimension = batch (the only dynamic one)
        {
            Dims dims = engine->getTensorShape(name.c_str());
            dims.d[0] = batch;
            if (!context->setInputShape(name.c_str(), dims))
            {
                throw std::runtime_error("batch " + std::to_string(batch) + " is outside the profile of " + path);
            }
        }
        for (auto const& name : inputs)
        {
            shapes[name] = context->getTensorShape(name.c_str());
        }
        for (auto const& name : outputs)
        {
            shapes[name] = context->getTensorShape(name.c_str());
        }
        for (auto const& [name, dims] : shapes)
        {
            void* ptr = nullptr;
            auto it = external.find(name);
            if (it != external.end())
            {
                ptr = it->second; // memory owned by someone else (split: decode reads z_mu in place)
            }
            else
            {
                CHECK_CUDA(cudaMalloc(&ptr, volume(dims) * sizeof(float)));
                buffers[name] = ptr;
            }
            context->setTensorAddress(name.c_str(), ptr);
        }
    }

    ~Engine()
    {
        for (auto& [name, ptr] : buffers)
        {
            cudaFree(ptr);
        }
    }

    void enqueue(cudaStream_t stream)
    {
        if (!context->enqueueV3(stream))
        {
            throw std::runtime_error("enqueueV3 failed");
        }
    }
};

void fillInputs(Engine& engine, cudaStream_t stream)
{
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> uniform(0.0F, 1.0F);
    for (auto const& name : engine.inputs)
    {
        std::vector<float> host(volume(engine.shapes[name]));
        for (auto& x : host)
        {
            x = name == "mask" ? 1.0F : uniform(rng);
        }
        CHECK_CUDA(cudaMemcpyAsync(
            engine.buffers[name], host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
    }
    CHECK_CUDA(cudaStreamSynchronize(stream));
}

void printOutput(std::string const& name, void const* device, Dims const& dims)
{
    std::vector<float> host(volume(dims));
    CHECK_CUDA(cudaMemcpy(host.data(), device, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
    double sum = 0.0;
    for (float x : host)
    {
        sum += x;
    }
    std::printf("%-14s %-18s sum %.6g  first %.6g\n", name.c_str(), shapeString(dims).c_str(), sum,
        host.empty() ? 0.0 : host[0]);
}

template <typename Run>
double timeIt(Run&& run, cudaStream_t stream, int32_t iterations)
{
    run(); // warm-up
    CHECK_CUDA(cudaStreamSynchronize(stream));
    auto const start = std::chrono::steady_clock::now();
    for (int32_t i = 0; i < iterations; ++i)
    {
        run();
    }
    CHECK_CUDA(cudaStreamSynchronize(stream));
    std::chrono::duration<double, std::milli> const elapsed = std::chrono::steady_clock::now() - start;
    return elapsed.count() / iterations;
}

int runSingle(IRuntime& runtime, std::string const& path, int32_t batch, int32_t iterations, cudaStream_t stream)
{
    Engine engine(runtime, path, batch);
    fillInputs(engine, stream);
    double const ms = timeIt([&] { engine.enqueue(stream); }, stream, iterations);
    for (auto const& name : engine.outputs)
    {
        printOutput(name, engine.buffers[name], engine.shapes[name]);
    }
    std::printf("%s: batch %d, %.3f ms per batch (mean of %d, inputs on the GPU)\n", path.c_str(), batch, ms,
        iterations);
    return 0;
}

int runSplit(IRuntime& runtime, std::string const& bundlePath, int32_t batch, int32_t iterations, cudaStream_t stream)
{
    auto const text = readFile(bundlePath);
    minijson::Value const bundle = minijson::Parser(std::string(text.begin(), text.end())).parse();
    std::string const dir = directoryOf(bundlePath);
    std::vector<std::string> modalities;
    for (auto const& m : bundle.at("modalities").array)
    {
        modalities.push_back(m.string);
    }
    auto const experts = static_cast<int32_t>(modalities.size());
    auto const latent = static_cast<int32_t>(bundle.at("latent_dim").number);
    auto const parts = experts + 2;

    // buffers the kernels own: fused posterior, KL terms, statistics, score
    std::map<std::string, int64_t> sizes{{"z_mu", int64_t{batch} * latent}, {"z_logvar", int64_t{batch} * latent},
        {"kl", batch}, {"cross", int64_t{batch} * experts}, {"score", batch}, {"parts", int64_t{batch} * parts},
        {"mean", parts}, {"std", parts}, {"weight", parts}};
    std::map<std::string, float*> extra;
    for (auto const& [name, count] : sizes)
    {
        CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&extra[name]), count * sizeof(float)));
    }
    auto const& stats = bundle.at("score_stats");
    for (char const* key : {"mean", "std", "weight"})
    {
        std::vector<float> host;
        for (auto const& v : stats.at(key).array)
        {
            host.push_back(static_cast<float>(v.number));
        }
        CHECK_CUDA(cudaMemcpy(extra[key], host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
    }

    auto const& engines = bundle.at("engines");
    Engine encode(runtime, dir + "/" + engines.at("encode").string, batch);
    Engine decode(runtime, dir + "/" + engines.at("decode").string, batch, {{"z", extra["z_mu"]}});
    fillInputs(encode, stream);

    std::vector<float const*> inputs;
    std::vector<float const*> recons;
    std::vector<int64_t> numel;
    for (auto const& m : modalities)
    {
        inputs.push_back(static_cast<float const*>(encode.buffers[m]));
        recons.push_back(static_cast<float const*>(decode.buffers["recon_" + m]));
        numel.push_back(volume(encode.shapes[m]) / batch);
    }
    auto const run = [&] {
        encode.enqueue(stream);
        CHECK_CUDA(launchPoeFusion(static_cast<float const*>(encode.buffers["expert_mu"]),
            static_cast<float const*>(encode.buffers["expert_logvar"]), static_cast<float const*>(encode.buffers["mask"]),
            batch, experts, latent, extra["z_mu"], extra["z_logvar"], extra["kl"], extra["cross"], stream));
        decode.enqueue(stream);
        CHECK_CUDA(launchAnomalyScore(inputs, recons, numel, static_cast<float const*>(encode.buffers["mask"]),
            extra["kl"], extra["cross"], extra["mean"], extra["std"], extra["weight"], extra["parts"], extra["score"],
            batch, stream));
    };
    double const ms = timeIt(run, stream, iterations);
    printOutput("z_mu", extra["z_mu"], Dims{2, {batch, latent}});
    for (auto const& m : modalities)
    {
        printOutput("recon_" + m, decode.buffers["recon_" + m], decode.shapes["recon_" + m]);
    }
    printOutput("score", extra["score"], Dims{1, {batch}});
    printOutput("score_parts", extra["parts"], Dims{2, {batch, parts}});
    std::printf("%s: batch %d, %.3f ms per batch (encode + poe_fusion + decode + anomaly_score, mean of %d)\n",
        bundlePath.c_str(), batch, ms, iterations);
    for (auto& [name, ptr] : extra)
    {
        cudaFree(ptr);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    std::string artifact;
    std::vector<std::string> plugins;
    int32_t batch = 1;
    int32_t iterations = 100;
    for (int i = 1; i < argc; ++i)
    {
        std::string const arg = argv[i];
        if (arg == "--batch" && i + 1 < argc)
        {
            batch = std::stoi(argv[++i]);
        }
        else if (arg == "--iterations" && i + 1 < argc)
        {
            iterations = std::stoi(argv[++i]);
        }
        else if (arg == "--plugins" && i + 1 < argc)
        {
            plugins.emplace_back(argv[++i]);
        }
        else if (artifact.empty() && arg.rfind("--", 0) != 0)
        {
            artifact = arg;
        }
        else
        {
            std::cerr << "usage: edgevae_infer ENGINE.plan|BUNDLE.split.json [--batch N] [--iterations N] "
                         "[--plugins LIB.so]\n";
            return 2;
        }
    }
    if (artifact.empty() || batch < 1 || iterations < 1)
    {
        std::cerr << "usage: edgevae_infer ENGINE.plan|BUNDLE.split.json [--batch N] [--iterations N] "
                     "[--plugins LIB.so]\n";
        return 2;
    }
    try
    {
        Logger logger;
        for (auto const& lib : plugins) // C++ plugin route (TensorRT < 10.9); AOT plugins need nothing
        {
            if (getPluginRegistry()->loadLibrary(lib.c_str()) == nullptr)
            {
                throw std::runtime_error("cannot load plugin library " + lib);
            }
        }
        std::unique_ptr<IRuntime> runtime{createInferRuntime(logger)};
        cudaStream_t stream{};
        CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        bool const split = artifact.size() > 11 && artifact.compare(artifact.size() - 11, 11, ".split.json") == 0;
        int const rc = split ? runSplit(*runtime, artifact, batch, iterations, stream)
                             : runSingle(*runtime, artifact, batch, iterations, stream);
        cudaStreamDestroy(stream);
        return rc;
    }
    catch (std::exception const& e)
    {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
