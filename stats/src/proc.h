// Reading /proc/self/maps and /proc/self/smaps without allocating: read(2)
// into a fixed buffer, lines parsed by hand (TCMalloc's proc_maps.h does the
// same). stdio would allocate a buffer, and this may run when spanmap is
// malloc. Used by inspect_mappings() (maps.cpp); tests feed it lines.
#pragma once

#include <spanmap/stats.h>

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string_view>

namespace spanmap::detail {

// Lines of a file read with read(2) through a fixed buffer. A line longer than
// the buffer comes back cut to the buffer, and its rest is skipped.
class line_reader {
public:
    explicit line_reader(int fd) noexcept : fd_(fd) {}

    // The next line, without its '\n'; false at the end of the file (or a
    // read error). The view lives until the next call.
    bool next(std::string_view& line) noexcept {
        for (;;) {
            if (const void* nl = std::memchr(buf_ + begin_, '\n', end_ - begin_)) {
                const auto at = static_cast<std::size_t>(static_cast<const char*>(nl) - buf_);
                line = std::string_view(buf_ + begin_, at - begin_);
                begin_ = at + 1;
                if (skipping_) {
                    skipping_ = false;
                    continue;
                }
                return true;
            }
            if (eof_) {
                if (begin_ == end_ || skipping_) return false;
                line = std::string_view(buf_ + begin_, end_ - begin_);
                begin_ = end_;
                return true;
            }
            if (begin_ == 0 && end_ == sizeof buf_) {
                // No newline in a full buffer: hand out what fits, once.
                line = std::string_view(buf_, end_);
                begin_ = end_ = 0;
                const bool first_part = !skipping_;
                skipping_ = true;
                if (first_part) return true;
                continue;
            }
            std::memmove(buf_, buf_ + begin_, end_ - begin_);
            end_ -= begin_;
            begin_ = 0;
            const ssize_t n = ::read(fd_, buf_ + end_, sizeof buf_ - end_);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0)
                eof_ = true;
            else
                end_ += static_cast<std::size_t>(n);
        }
    }

    static constexpr std::size_t buffer_bytes = 4096;

private:
    int fd_;
    char buf_[buffer_bytes];
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    bool eof_ = false;
    bool skipping_ = false;
};

// "start-end perms offset dev inode [name]", as /proc/self/maps writes it
// (and smaps, above each mapping's figures). Fills start, end, perms and name
// (cut to fit), zeroes the rest; false for any other line.
bool parse_maps_line(std::string_view s, mapping_line& out) noexcept;
// "Rss:                 123 kB": sets the line's figure in bytes when the
// field is one the report keeps (Size, Rss, Private_Dirty, AnonHugePages).
void parse_smaps_field(std::string_view s, mapping_line& line) noexcept;

}  // namespace spanmap::detail
