//! \file miniJson.h
//! Just enough JSON to read an edgevae split bundle (analyze.<precision>.split.json): objects,
//! arrays, strings, numbers, true/false/null. Throws std::runtime_error on malformed input (this is
//! application code, not a plugin library).
#pragma once

#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace minijson
{

struct Value
{
    enum class Kind
    {
        kNULL,
        kBOOL,
        kNUMBER,
        kSTRING,
        kARRAY,
        kOBJECT
    };
    Kind kind{Kind::kNULL};
    bool boolean{false};
    double number{0.0};
    std::string string;
    std::vector<Value> array;
    std::map<std::string, Value> object;

    Value const& at(std::string const& key) const
    {
        auto it = object.find(key);
        if (kind != Kind::kOBJECT || it == object.end())
        {
            throw std::runtime_error("missing JSON key '" + key + "'");
        }
        return it->second;
    }
};

class Parser
{
public:
    explicit Parser(std::string text)
        : mText(std::move(text))
    {
    }

    Value parse()
    {
        Value v = value();
        skip();
        if (mPos != mText.size())
        {
            throw std::runtime_error("trailing characters in JSON");
        }
        return v;
    }

private:
    std::string mText;
    size_t mPos{0};

    void skip()
    {
        while (mPos < mText.size() && std::isspace(static_cast<unsigned char>(mText[mPos])))
        {
            ++mPos;
        }
    }

    char peek()
    {
        skip();
        if (mPos >= mText.size())
        {
            throw std::runtime_error("unexpected end of JSON");
        }
        return mText[mPos];
    }

    void expect(char c)
    {
        if (peek() != c)
        {
            throw std::runtime_error(std::string("expected '") + c + "' in JSON");
        }
        ++mPos;
    }

    Value value()
    {
        char const c = peek();
        Value v;
        if (c == '{')
        {
            v.kind = Value::Kind::kOBJECT;
            ++mPos;
            if (peek() == '}')
            {
                ++mPos;
                return v;
            }
            while (true)
            {
                std::string key = string();
                expect(':');
                v.object[key] = value();
                if (peek() == ',')
                {
                    ++mPos;
                    continue;
                }
                expect('}');
                return v;
            }
        }
        if (c == '[')
        {
            v.kind = Value::Kind::kARRAY;
            ++mPos;
            if (peek() == ']')
            {
                ++mPos;
                return v;
            }
            while (true)
            {
                v.array.push_back(value());
                if (peek() == ',')
                {
                    ++mPos;
                    continue;
                }
                expect(']');
                return v;
            }
        }
        if (c == '"')
        {
            v.kind = Value::Kind::kSTRING;
            v.string = string();
            return v;
        }
        for (auto const& [word, kind, flag] : {std::tuple<char const*, Value::Kind, bool>{"true", Value::Kind::kBOOL, true},
                 {"false", Value::Kind::kBOOL, false}, {"null", Value::Kind::kNULL, false}})
        {
            std::string const w{word};
            if (mText.compare(mPos, w.size(), w) == 0)
            {
                mPos += w.size();
                v.kind = kind;
                v.boolean = flag;
                return v;
            }
        }
        char* end = nullptr;
        v.number = std::strtod(mText.c_str() + mPos, &end);
        if (end == mText.c_str() + mPos)
        {
            throw std::runtime_error("invalid JSON value");
        }
        mPos = static_cast<size_t>(end - mText.c_str());
        v.kind = Value::Kind::kNUMBER;
        return v;
    }

    std::string string()
    {
        expect('"');
        std::string out;
        while (mPos < mText.size() && mText[mPos] != '"')
        {
            char ch = mText[mPos++];
            if (ch == '\\' && mPos < mText.size())
            {
                char const esc = mText[mPos++];
                ch = esc == 'n' ? '\n' : esc == 't' ? '\t' : esc; // \" \\ \/ (no \u: not used here)
            }
            out.push_back(ch);
        }
        expect('"');
        return out;
    }
};

} // namespace minijson
