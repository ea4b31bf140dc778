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
