// The one way spanmap writes text: a fixed buffer on the caller's stack,
// emptied with write(2) into a file descriptor, into a FILE that has none, or
// copied into the caller's memory. Never malloc, never stdio's buffers: the
// allocator may be malloc, and its messages, reports and profiles are written
// from inside it (a bad free, a report at exit, a profile at exit).
//
// printf takes integer and string conversions only: glibc may format floating
// point through malloc, so figures such as percentages are computed in
// integers by the caller.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace spanmap::detail {

class text_writer {
public:
    explicit text_writer(int fd) noexcept : fd_(fd) {}
    // To fd, or to file when fd < 0 (a FILE on memory, say).
    text_writer(int fd, std::FILE* file) noexcept : fd_(fd), file_(file) {}
    // Into out[0, len), always NUL-terminated; finish() counts what did not
    // fit too, as snprintf does.
    text_writer(char* out, std::size_t len) noexcept : out_(out), out_len_(len) {}
    text_writer(const text_writer&) = delete;
    text_writer& operator=(const text_writer&) = delete;

    void bytes(const char* s, std::size_t n) noexcept {
        while (n > 0) {
            if (used_ == sizeof buf_) flush();
            std::size_t k = sizeof buf_ - used_;
            if (k > n) k = n;
            std::memcpy(buf_ + used_, s, k);
            used_ += k;
            s += k;
            n -= k;
        }
    }
    text_writer& operator<<(std::string_view s) noexcept {
        bytes(s.data(), s.size());
        return *this;
    }
    text_writer& operator<<(std::uint64_t v) noexcept {
        char tmp[20];
        int i = 0;
        do {
            tmp[i++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (i > 0) bytes(&tmp[--i], 1);
        return *this;
    }
    void put(std::string_view s) noexcept { bytes(s.data(), s.size()); }
    // "0x" and lowercase hex digits.
    void hex(std::uint64_t v) noexcept {
        static constexpr char digits[] = "0123456789abcdef";
        char tmp[16];
        int i = 0;
        do {
            tmp[i++] = digits[v & 15];
            v >>= 4;
        } while (v != 0);
        bytes("0x", 2);
        while (i > 0) bytes(&tmp[--i], 1);
    }

    __attribute__((format(printf, 2, 3))) void printf(const char* fmt, ...) noexcept {
        for (int attempt = 0; attempt < 2; ++attempt) {
            std::va_list ap;
            va_start(ap, fmt);
            const int n = std::vsnprintf(buf_ + used_, sizeof buf_ - used_, fmt, ap);
            va_end(ap);
            if (n < 0) return;
            if (used_ + static_cast<std::size_t>(n) < sizeof buf_) {
                used_ += static_cast<std::size_t>(n);
                return;
            }
            if (attempt == 0 && used_ > 0) {
                flush();
                continue;
            }
            used_ = sizeof buf_ - 1;  // one piece longer than the buffer: cut
        }
    }

    // Empties the buffer; returns the length written so far and whether
    // every write succeeded (errno says why not).
    std::size_t finish() noexcept {
        flush();
        if (out_ != nullptr && out_len_ > 0) out_[out_pos_ < out_len_ ? out_pos_ : out_len_ - 1] = '\0';
        return total_;
    }
    bool ok() const noexcept { return ok_; }

private:
    void flush() noexcept {
        const char* p = buf_;
        std::size_t left = used_;
        total_ += used_;
        used_ = 0;
        if (out_ != nullptr) {
            if (out_pos_ + 1 < out_len_) {
                const std::size_t room = out_len_ - 1 - out_pos_;
                const std::size_t n = left < room ? left : room;
                std::memcpy(out_ + out_pos_, p, n);
                out_pos_ += n;
            }
            return;
        }
        if (fd_ < 0) {
            if (file_ != nullptr) std::fwrite(p, 1, left, file_);
            return;
        }
        while (ok_ && left > 0) {
            const ssize_t n = ::write(fd_, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                if (n == 0) errno = EIO;
                ok_ = false;
                return;
            }
            p += n;
            left -= static_cast<std::size_t>(n);
        }
    }

    char buf_[4096];
    std::size_t used_ = 0;
    std::size_t total_ = 0;
    int fd_ = -1;
    std::FILE* file_ = nullptr;
    char* out_ = nullptr;
    std::size_t out_len_ = 0;
    std::size_t out_pos_ = 0;
    bool ok_ = true;
};

}  // namespace spanmap::detail
