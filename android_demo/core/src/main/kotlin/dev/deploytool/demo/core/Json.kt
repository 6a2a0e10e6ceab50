package dev.deploytool.demo.core

/**
 * Minimal JSON reader: objects -> Map<String, Any?>, arrays -> List<Any?>, numbers -> Double,
 * plus String, Boolean and null. Enough for manifest.json, and keeps the core free of
 * Android (org.json) and third-party dependencies so it builds with a bare kotlinc.
 */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        val value = reader.value()
        reader.skipSpace()
        if (reader.pos != text.length) reader.fail("trailing characters")
        return value
    }

    private class Reader(val s: String) {
        var pos = 0

        fun fail(msg: String): Nothing = throw IllegalArgumentException("JSON: $msg at offset $pos")

        fun skipSpace() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun value(): Any? {
            skipSpace()
            if (pos >= s.length) fail("unexpected end")
            val c = s[pos]
            return when {
                c == '{' -> obj()
                c == '[' -> array()
                c == '"' -> string()
                c == '-' || (c in '0'..'9') -> number()
                s.startsWith("true", pos) -> { pos += 4; true }
                s.startsWith("false", pos) -> { pos += 5; false }
                s.startsWith("null", pos) -> { pos += 4; null }
                else -> fail("unexpected '$c'")
            }
        }

        fun expect(c: Char) {
            skipSpace()
            if (pos >= s.length || s[pos] != c) fail("expected '$c'")
            pos++
        }

        /** Consumes [c] if it is next; used for the separators and closing brackets. */
        fun accept(c: Char): Boolean {
            skipSpace()
            if (pos < s.length && s[pos] == c) { pos++; return true }
            return false
        }

        fun obj(): Map<String, Any?> {
            expect('{')
            val out = LinkedHashMap<String, Any?>()
            if (accept('}')) return out
            do {
                skipSpace()
                val key = string()
                expect(':')
                out[key] = value()
            } while (accept(','))
            expect('}')
            return out
        }

        fun array(): List<Any?> {
            expect('[')
            val out = ArrayList<Any?>()
            if (accept(']')) return out
            do { out.add(value()) } while (accept(','))
            expect(']')
            return out
        }

        fun string(): String {
            if (pos >= s.length || s[pos] != '"') fail("expected string")
            pos++
            val sb = StringBuilder()
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when (c) {
                    '"' -> return sb.toString()
                    '\\' -> {
                        if (pos >= s.length) fail("bad escape")
                        val e = s[pos++]
                        when (e) {
                            '"', '\\', '/' -> sb.append(e)
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) fail("bad \\u escape")
                                sb.append(s.substring(pos, pos + 4).toInt(16).toChar())
                                pos += 4
                            }
                            else -> fail("bad escape '\\$e'")
                        }
                    }
                    else -> sb.append(c)
                }
            }
        }

        fun number(): Double {
            val start = pos
            while (pos < s.length && (s[pos] in '0'..'9' || s[pos] == '-' || s[pos] == '+' ||
                        s[pos] == '.' || s[pos] == 'e' || s[pos] == 'E')) pos++
            return s.substring(start, pos).toDoubleOrNull() ?: fail("bad number")
        }
    }
}
