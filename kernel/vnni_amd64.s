#include "go_asm.h"
#include "textflag.h"

// func vnniRows(f *[4][16]float32, p *vnniArgs)
//
// Four tokens times a 16-row panel over p.blocks blocks (vnni_amd64.go);
// p.sum and p.xd advance with the blocks. Registers: Z0–Z3 a group's
// integer sums per token, Z4–Z7 a block's scaled integer sums, Z8 the
// values, Z9 the group's scales, Z10 its coefficients, Z11 the rows' d, Z12
// a temporary, Z16–Z19 the float sums per token.
TEXT ·vnniRows(SB), NOSPLIT, $0-16
	MOVQ p+8(FP), AX
	MOVQ vnniArgs_vals(AX), SI
	MOVQ vnniArgs_scales(AX), DX
	MOVQ vnniArgs_coef(AX), R13
	MOVQ vnniArgs_d(AX), R14
	MOVQ vnniArgs_x(AX), R8
	MOVQ vnniArgs_xStride(AX), R12
	LEAQ (R8)(R12*1), R9
	LEAQ (R8)(R12*2), R10
	LEAQ (R9)(R12*2), R11
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	MOVQ vnniArgs_blocks(AX), R15

block:
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	MOVQ vnniArgs_groups(AX), CX
	MOVQ vnniArgs_sum(AX), BX

group:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	MOVQ vnniArgs_chunks(AX), R12

chunk:
	VMOVDQU32 (SI), Z8
	VPDPBUSD.BCST (R8), Z8, Z0
	VPDPBUSD.BCST (R9), Z8, Z1
	VPDPBUSD.BCST (R10), Z8, Z2
	VPDPBUSD.BCST (R11), Z8, Z3
	ADDQ $64, SI
	ADDQ $4, R8
	ADDQ $4, R9
	ADDQ $4, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  chunk

	// The group's scales times its integer sums; its coefficients times
	// each token's sum of the group's activations.
	VMOVDQU32        (DX), Z9
	VPMULLD          Z9, Z0, Z0
	VPMULLD          Z9, Z1, Z1
	VPMULLD          Z9, Z2, Z2
	VPMULLD          Z9, Z3, Z3
	VPADDD           Z0, Z4, Z4
	VPADDD           Z1, Z5, Z5
	VPADDD           Z2, Z6, Z6
	VPADDD           Z3, Z7, Z7
	VMOVUPS          (R13), Z10
	MOVQ             vnniArgs_sumStride(AX), R12
	LEAQ             (BX)(R12*2), DI
	VFMADD231PS.BCST (BX), Z10, Z16
	VFMADD231PS.BCST (BX)(R12*1), Z10, Z17
	VFMADD231PS.BCST (DI), Z10, Z18
	VFMADD231PS.BCST (DI)(R12*1), Z10, Z19
	ADDQ             $4, BX
	ADDQ             $64, DX
	ADDQ             $64, R13
	DECQ             CX
	JNZ              group

	// The block's integer sums times d and each token's activation scale.
	MOVQ        BX, vnniArgs_sum(AX)
	VMOVUPS     (R14), Z11
	MOVQ        vnniArgs_xd(AX), BX
	MOVQ        vnniArgs_xdStride(AX), R12
	LEAQ        (BX)(R12*2), DI
	VCVTDQ2PS   Z4, Z4
	VMULPS.BCST (BX), Z11, Z12
	VFMADD231PS Z12, Z4, Z16
	VCVTDQ2PS   Z5, Z5
	VMULPS.BCST (BX)(R12*1), Z11, Z12
	VFMADD231PS Z12, Z5, Z17
	VCVTDQ2PS   Z6, Z6
	VMULPS.BCST (DI), Z11, Z12
	VFMADD231PS Z12, Z6, Z18
	VCVTDQ2PS   Z7, Z7
	VMULPS.BCST (DI)(R12*1), Z11, Z12
	VFMADD231PS Z12, Z7, Z19
	ADDQ        $4, BX
	MOVQ        BX, vnniArgs_xd(AX)
	ADDQ        $64, R14
	DECQ        R15
	JNZ         block

	MOVQ    f+0(FP), DI
	VMOVUPS Z16, 0(DI)
	VMOVUPS Z17, 64(DI)
	VMOVUPS Z18, 128(DI)
	VMOVUPS Z19, 192(DI)
	VZEROUPPER
	RET

// func vnniRowsLegacy(f *[4][16]float32, p *vnniArgs)
//
// Four tokens times a 16-row panel of a legacy type (vnniLegacyPanel) over
// p.groups groups of 32 values, each with the rows' own float scale d and
// coefficient of the activations' group sum. Registers as in vnniRows;
// p.scales and p.blocks are not used.
TEXT ·vnniRowsLegacy(SB), NOSPLIT, $0-16
	MOVQ p+8(FP), AX
	MOVQ vnniArgs_vals(AX), SI
	MOVQ vnniArgs_coef(AX), R13
	MOVQ vnniArgs_d(AX), R14
	MOVQ vnniArgs_x(AX), R8
	MOVQ vnniArgs_xStride(AX), R12
	LEAQ (R8)(R12*1), R9
	LEAQ (R8)(R12*2), R10
	LEAQ (R9)(R12*2), R11
	MOVQ vnniArgs_xd(AX), BX
	MOVQ vnniArgs_sum(AX), DX
	MOVQ vnniArgs_xdStride(AX), R12
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	MOVQ vnniArgs_groups(AX), CX

lgroup:
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	MOVQ $8, R15

lchunk:
	VMOVDQU32 (SI), Z8
	VPDPBUSD.BCST (R8), Z8, Z0
	VPDPBUSD.BCST (R9), Z8, Z1
	VPDPBUSD.BCST (R10), Z8, Z2
	VPDPBUSD.BCST (R11), Z8, Z3
	ADDQ $64, SI
	ADDQ $4, R8
	ADDQ $4, R9
	ADDQ $4, R10
	ADDQ $4, R11
	DECQ R15
	JNZ  lchunk

	// The group's integer sums times d and each token's activation scale,
	// and its coefficients times each token's activation sum.
	VMOVUPS          (R14), Z11
	VMOVUPS          (R13), Z10
	LEAQ             (BX)(R12*2), DI
	LEAQ             (DX)(R12*2), R15
	VCVTDQ2PS        Z0, Z0
	VMULPS.BCST      (BX), Z11, Z12
	VFMADD231PS      Z12, Z0, Z16
	VFMADD231PS.BCST (DX), Z10, Z16
	VCVTDQ2PS        Z1, Z1
	VMULPS.BCST      (BX)(R12*1), Z11, Z12
	VFMADD231PS      Z12, Z1, Z17
	VFMADD231PS.BCST (DX)(R12*1), Z10, Z17
	VCVTDQ2PS        Z2, Z2
	VMULPS.BCST      (DI), Z11, Z12
	VFMADD231PS      Z12, Z2, Z18
	VFMADD231PS.BCST (R15), Z10, Z18
	VCVTDQ2PS        Z3, Z3
	VMULPS.BCST      (DI)(R12*1), Z11, Z12
	VFMADD231PS      Z12, Z3, Z19
	VFMADD231PS.BCST (R15)(R12*1), Z10, Z19
	ADDQ             $4, BX
	ADDQ             $4, DX
	ADDQ             $64, R13
	ADDQ             $64, R14
	DECQ             CX
	JNZ              lgroup

	MOVQ    f+0(FP), DI
	VMOVUPS Z16, 0(DI)
	VMOVUPS Z17, 64(DI)
	VMOVUPS Z18, 128(DI)
	VMOVUPS Z19, 192(DI)
	VZEROUPPER
	RET

// func transpose16(dst, src *byte, srcStride int)
//
// dst[k][r] = src[r][k] for a 16×16 matrix of 32-bit words: src rows
// srcStride bytes apart, dst rows 64 bytes apart. Pairs of rows are
// interleaved by words, then by quad-words, which transposes each 4×4
// block of a 128-bit lane; two shuffles of whole lanes put the blocks in
// place.
TEXT ·transpose16(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ srcStride+16(FP), CX
	VMOVDQU32 (SI), Z0
	ADDQ CX, SI
	VMOVDQU32 (SI), Z1
	ADDQ CX, SI
	VMOVDQU32 (SI), Z2
	ADDQ CX, SI
	VMOVDQU32 (SI), Z3
	ADDQ CX, SI
	VMOVDQU32 (SI), Z4
	ADDQ CX, SI
	VMOVDQU32 (SI), Z5
	ADDQ CX, SI
	VMOVDQU32 (SI), Z6
	ADDQ CX, SI
	VMOVDQU32 (SI), Z7
	ADDQ CX, SI
	VMOVDQU32 (SI), Z8
	ADDQ CX, SI
	VMOVDQU32 (SI), Z9
	ADDQ CX, SI
	VMOVDQU32 (SI), Z10
	ADDQ CX, SI
	VMOVDQU32 (SI), Z11
	ADDQ CX, SI
	VMOVDQU32 (SI), Z12
	ADDQ CX, SI
	VMOVDQU32 (SI), Z13
	ADDQ CX, SI
	VMOVDQU32 (SI), Z14
	ADDQ CX, SI
	VMOVDQU32 (SI), Z15
	VPUNPCKLDQ Z1, Z0, Z16
	VPUNPCKHDQ Z1, Z0, Z17
	VPUNPCKLDQ Z3, Z2, Z18
	VPUNPCKHDQ Z3, Z2, Z19
	VPUNPCKLDQ Z5, Z4, Z20
	VPUNPCKHDQ Z5, Z4, Z21
	VPUNPCKLDQ Z7, Z6, Z22
	VPUNPCKHDQ Z7, Z6, Z23
	VPUNPCKLDQ Z9, Z8, Z24
	VPUNPCKHDQ Z9, Z8, Z25
	VPUNPCKLDQ Z11, Z10, Z26
	VPUNPCKHDQ Z11, Z10, Z27
	VPUNPCKLDQ Z13, Z12, Z28
	VPUNPCKHDQ Z13, Z12, Z29
	VPUNPCKLDQ Z15, Z14, Z30
	VPUNPCKHDQ Z15, Z14, Z31
	VPUNPCKLQDQ Z18, Z16, Z0
	VPUNPCKHQDQ Z18, Z16, Z1
	VPUNPCKLQDQ Z19, Z17, Z2
	VPUNPCKHQDQ Z19, Z17, Z3
	VPUNPCKLQDQ Z22, Z20, Z4
	VPUNPCKHQDQ Z22, Z20, Z5
	VPUNPCKLQDQ Z23, Z21, Z6
	VPUNPCKHQDQ Z23, Z21, Z7
	VPUNPCKLQDQ Z26, Z24, Z8
	VPUNPCKHQDQ Z26, Z24, Z9
	VPUNPCKLQDQ Z27, Z25, Z10
	VPUNPCKHQDQ Z27, Z25, Z11
	VPUNPCKLQDQ Z30, Z28, Z12
	VPUNPCKHQDQ Z30, Z28, Z13
	VPUNPCKLQDQ Z31, Z29, Z14
	VPUNPCKHQDQ Z31, Z29, Z15
	VSHUFI32X4 $0x44, Z4, Z0, Z16
	VSHUFI32X4 $0xEE, Z4, Z0, Z17
	VSHUFI32X4 $0x44, Z12, Z8, Z18
	VSHUFI32X4 $0xEE, Z12, Z8, Z19
	VSHUFI32X4 $0x44, Z5, Z1, Z20
	VSHUFI32X4 $0xEE, Z5, Z1, Z21
	VSHUFI32X4 $0x44, Z13, Z9, Z22
	VSHUFI32X4 $0xEE, Z13, Z9, Z23
	VSHUFI32X4 $0x44, Z6, Z2, Z24
	VSHUFI32X4 $0xEE, Z6, Z2, Z25
	VSHUFI32X4 $0x44, Z14, Z10, Z26
	VSHUFI32X4 $0xEE, Z14, Z10, Z27
	VSHUFI32X4 $0x44, Z7, Z3, Z28
	VSHUFI32X4 $0xEE, Z7, Z3, Z29
	VSHUFI32X4 $0x44, Z15, Z11, Z30
	VSHUFI32X4 $0xEE, Z15, Z11, Z31
	VSHUFI32X4 $0x88, Z18, Z16, Z0
	VSHUFI32X4 $0xDD, Z18, Z16, Z4
	VSHUFI32X4 $0x88, Z19, Z17, Z8
	VSHUFI32X4 $0xDD, Z19, Z17, Z12
	VSHUFI32X4 $0x88, Z22, Z20, Z1
	VSHUFI32X4 $0xDD, Z22, Z20, Z5
	VSHUFI32X4 $0x88, Z23, Z21, Z9
	VSHUFI32X4 $0xDD, Z23, Z21, Z13
	VSHUFI32X4 $0x88, Z26, Z24, Z2
	VSHUFI32X4 $0xDD, Z26, Z24, Z6
	VSHUFI32X4 $0x88, Z27, Z25, Z10
	VSHUFI32X4 $0xDD, Z27, Z25, Z14
	VSHUFI32X4 $0x88, Z30, Z28, Z3
	VSHUFI32X4 $0xDD, Z30, Z28, Z7
	VSHUFI32X4 $0x88, Z31, Z29, Z11
	VSHUFI32X4 $0xDD, Z31, Z29, Z15
	VMOVDQU32 Z0, 0(DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	VMOVDQU32 Z4, 256(DI)
	VMOVDQU32 Z5, 320(DI)
	VMOVDQU32 Z6, 384(DI)
	VMOVDQU32 Z7, 448(DI)
	VMOVDQU32 Z8, 512(DI)
	VMOVDQU32 Z9, 576(DI)
	VMOVDQU32 Z10, 640(DI)
	VMOVDQU32 Z11, 704(DI)
	VMOVDQU32 Z12, 768(DI)
	VMOVDQU32 Z13, 832(DI)
	VMOVDQU32 Z14, 896(DI)
	VMOVDQU32 Z15, 960(DI)
	VZEROUPPER
	RET
