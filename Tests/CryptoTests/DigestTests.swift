import Crypto
import Testing

@Suite struct DigestTests {
    // FIPS 180-2 / RFC 1321 test vectors.
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        ),
    ])
    func sha256MatchesNISTVectors(input: String, expected: String) {
        #expect(Hex.encode(Digest.sha256(Array(input.utf8))) == expected)
    }

    @Test func sha256OfOneMillionAsMatchesNIST() {
        let hasher = Hasher(.sha256)
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(chunk) }
        #expect(Hex.encode(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test(arguments: [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a", "0cc175b9c0f1b6a831c399e269772661"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a"
        ),
    ])
    func md5MatchesRFC1321Vectors(input: String, expected: String) {
        #expect(Hex.encode(Digest.md5(Array(input.utf8))) == expected)
    }

    @Test func sha1MatchesFIPSVector() {
        #expect(Hex.encode(Digest.sha1(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
    }

    @Test func hexRoundTripsAndRejectsGarbage() {
        let bytes: [UInt8] = [0, 1, 0xAB, 0xFF]
        #expect(Hex.decode(Hex.encode(bytes)) == bytes)
        #expect(Hex.decode("ABff") == [0xAB, 0xFF])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
    }
}

@Suite struct HMACTests {
    // RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 is truncated output).
    @Test(arguments: [
        (
            String(repeating: "0b", count: 20), Hex.encode(Array("Hi There".utf8)),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        ),
        (
            Hex.encode(Array("Jefe".utf8)), Hex.encode(Array("what do ya want for nothing?".utf8)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ),
        (
            String(repeating: "aa", count: 20), String(repeating: "dd", count: 50),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        ),
        (
            "0102030405060708090a0b0c0d0e0f10111213141516171819", String(repeating: "cd", count: 50),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
        ),
        (
            String(repeating: "aa", count: 131),
            Hex.encode(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        ),
        (
            String(repeating: "aa", count: 131),
            Hex.encode(
                Array(
                    ("This is a test using a larger than block-size key and a larger than block-size data. "
                        + "The key needs to be hashed before being used by the HMAC algorithm.").utf8)),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        ),
    ])
    func hmacSHA256MatchesRFC4231(keyHex: String, dataHex: String, expected: String) throws {
        let key = try #require(Hex.decode(keyHex))
        let data = try #require(Hex.decode(dataHex))
        #expect(Hex.encode(HMAC.sha256(key: key, message: data)) == expected)
    }

    @Test func constantTimeEqualsComparesContent() {
        #expect(HMAC.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!HMAC.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!HMAC.constantTimeEquals([1, 2], [1, 2, 3]))
    }
}

@Suite struct RandomAndSigningTests {
    @Test func secureRandomReturnsRequestedLengthAndVaries() {
        let a = SecureRandom.bytes(32)
        let b = SecureRandom.bytes(32)
        #expect(a.count == 32)
        #expect(a != b)  // 2^-256 chance of a false failure
        #expect(SecureRandom.bytes(0).isEmpty)
    }

    @Test func p256SignatureIsRawRAndSAndKeyRoundTripsThroughPEM() throws {
        let key = try P256SigningKey.generate()
        let message = Array("header.payload".utf8)
        let raw = try key.signatureRaw(for: message)
        #expect(raw.count == 64)
        // Reload from PEM and sign again: ECDSA is randomised, so signatures differ but both are 64 bytes.
        let reloaded = try P256SigningKey(pem: key.pemRepresentation())
        #expect(try reloaded.signatureRaw(for: message).count == 64)
        #expect(try key.publicKeyPEM().hasPrefix("-----BEGIN PUBLIC KEY-----"))
    }

    @Test func loadingGarbagePEMThrowsClearError() {
        #expect(throws: CryptoError.self) { try P256SigningKey(pem: "not a key") }
    }
}
